using LLama;
using LLama.Common;
using LLama.Native;
using MoeMesh.Engine.Export;

namespace MoeMesh.Engine.Tests.Export;

/// <summary>
/// The GGUF exporter against llama.cpp itself (LLamaSharp's CPU build, an independent implementation of DeepSeek's
/// architecture): the exported demo model loads in llama.cpp's deepseek2 and gives, at every position of several
/// prompts (some longer than a KV page), the same greedy token and the same log-probabilities as MoeMesh's engine.
/// </summary>
[Collection(LlamaCpp.Name)]
public sealed class GgufExportTests(LlamaCpp llama)
{
    private static readonly int[][] Prompts =
    [
        [5, 17, 300, 42, 8, 99, 250, 3, 77, 120, 64, 1],
        [9, 8, 7],
        Enumerable.Range(0, 40).Select(i => (i * 37 + 11) % 290 + 3).ToArray(),
    ];

    [Theory]
    // F32 differs by float rounding (7e-6 seen); llama.cpp rounds activations to the weights' type before each
    // product on the CPU, by up to 0.008 (F16) and 0.06 (BF16) seen.
    [InlineData("f32", 1e-4)]
    [InlineData("f16", 0.03)]
    [InlineData("bf16", 0.15)]
    public void ExportedDemoModel_InLlamaCpp_GivesTheEnginesLogprobs(string type, double tolerance)
    {
        var path = Path.Combine(Path.GetTempPath(), "moemesh-tests", $"demo-{type}-{Environment.ProcessId}.gguf");
        GgufExporter.Export(TestModels.V3Dir, path, GgufExporter.ParseType(type), TextWriter.Null);
        var model = TestModels.Load(TestModels.V3Dir);
        var vocab = model.Config.VocabSize;
        var parameters = new ModelParams(path)
        {
            ContextSize = 256, BatchSize = 256, UBatchSize = 256, GpuLayerCount = 0, Threads = 1, BatchThreads = 1,
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
        };
        using var weights = llama.Load(parameters);
        Assert.Equal(vocab, weights.Vocab.Count);
        foreach (var prompt in Prompts)
        {
            using var context = weights.CreateContext(parameters);
            var batch = new LLamaBatch();
            for (var i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, true);
            var decoded = context.Decode(batch);
            Assert.True(decoded == DecodeResult.Ok, $"llama.cpp decode: {decoded}\n{llama.Log}");
            var harness = new ModelHarness(model);
            var expected = harness.Step((harness.NewSequence(prompt), 0, prompt.Length))[0];
            var worst = 0.0;
            for (var i = 0; i < prompt.Length; i++)
            {
                var actual = LogSoftmax(context.NativeHandle.GetLogitsIth(i).ToArray());
                var reference = LogSoftmax(expected[i]);
                Assert.Equal(vocab, actual.Length);
                // The greedy token must agree wherever the reference's top two are further apart than the tolerance allows to swap.
                var top = reference.Order().TakeLast(2).ToArray();
                if (top[1] - top[0] > 2 * tolerance)
                    Assert.True(ArgMax(reference) == ArgMax(actual), $"{type}, prompt of {prompt.Length}, position {i}: greedy token {ArgMax(actual)} in llama.cpp, {ArgMax(reference)} in MoeMesh");
                worst = Math.Max(worst, reference.Zip(actual, (a, b) => Math.Abs(a - b)).Max());
            }
            Assert.True(worst < tolerance, $"{type}, prompt of {prompt.Length}: log-probs differ by up to {worst} (tolerance {tolerance})");
        }
    }

    [Fact]
    public void GroupLimitedGreedyRouting_IsRefused_NotApproximated()
    {
        var path = Path.Combine(Path.GetTempPath(), "moemesh-tests", $"v2-{Environment.ProcessId}.gguf");
        var e = Assert.Throws<InvalidDataException>(() => GgufExporter.Export(TestModels.V2Dir, path, GgufType.F32, TextWriter.Null));
        Assert.Contains("group_limited_greedy", e.Message);
        Assert.False(File.Exists(path));
    }

    private static double[] LogSoftmax(float[] logits)
    {
        var max = logits.Max();
        var sum = logits.Sum(l => Math.Exp(l - max));
        return logits.Select(l => l - max - Math.Log(sum)).ToArray();
    }

    private static int ArgMax(double[] values) => Array.IndexOf(values, values.Max());
}

/// <summary>llama.cpp loaded once per test run, its log kept for failure messages.</summary>
public sealed class LlamaCpp
{
    public const string Name = "llama.cpp";

    private readonly List<string> _log = [];

    public LlamaCpp()
    {
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            lock (_log) _log.Add($"{level}: {message.TrimEnd()}");
        });
    }

    /// <summary>The last lines llama.cpp logged.</summary>
    public string Log
    {
        get
        {
            lock (_log) return string.Join("\n", _log.TakeLast(40));
        }
    }

    public LLamaWeights Load(ModelParams parameters)
    {
        try
        {
            return LLamaWeights.LoadFromFile(parameters);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"llama.cpp could not load {parameters.ModelPath}: {e.Message}\n{Log}", e);
        }
    }
}

[CollectionDefinition(LlamaCpp.Name)]
public sealed class LlamaCppCollection : ICollectionFixture<LlamaCpp>;
