using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests;

/// <summary>Generated tiny checkpoints shared by the tests of one run.</summary>
public static class TestModels
{
    private static readonly Lazy<string> V3 = new(() => Generate("v3", DemoShape.Tiny, DemoModel.WeightFormat.BF16));
    private static readonly Lazy<string> V2 = new(() => Generate("v2", DemoShape.TinyV2, DemoModel.WeightFormat.BF16));
    private static readonly Lazy<string> Fp8 = new(() => Generate("fp8", DemoShape.Tiny, DemoModel.WeightFormat.FP8, seed: 11));

    public static string V3Dir => V3.Value;
    public static string V2Dir => V2.Value;

    /// <summary>The tiny V3 shape with FP8 projections and block scales (seed 11); one writer for every test class.</summary>
    public static string Fp8Dir => Fp8.Value;

    public static string Generate(string name, DemoShape shape, DemoModel.WeightFormat format, long seed = 7)
    {
        var dir = Path.Combine(Path.GetTempPath(), "moemesh-tests", $"{name}-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model.safetensors"))) DemoModel.Write(dir, shape, seed, format);
        return dir;
    }

    public static DeepSeekModel Load(string dir) => DeepSeekModel.Load(dir, ComputeOptions.Cpu);
}

/// <summary>Runs hand-made chunks through a model with its own cache, returning logits of every new token.</summary>
public sealed class ModelHarness(DeepSeekModel model, int pageSize = 4, int pages = 256)
{
    public LatentKvCache Cache { get; } = new(model.Config, model.Options, (long)pages * pageSize * model.Config.NumHiddenLayers * model.Config.LatentCacheDim * 4, pageSize);
    public BlockAllocator Allocator { get; } = new(pages, pageSize);
    public DeepSeekModel Model => model;

    public Sequence NewSequence(IReadOnlyList<int> tokens) => new(0, tokens, new SamplingParams());

    /// <summary>Computes the given chunks in one step; returns per chunk the logits of each of its tokens.</summary>
    public float[][][] Step(params (Sequence Seq, int Start, int Length)[] chunks) => Step(0, chunks);

    /// <summary>As <see cref="Step(ValueTuple{Sequence, int, int}[])"/>, split into two micro-batches before chunk <paramref name="split"/> (0: one batch).</summary>
    public float[][][] Step(int split, params (Sequence Seq, int Start, int Length)[] chunks)
    {
        var scheduled = chunks.Select(c =>
        {
            Assert.True(Allocator.TryReserve(c.Seq.BlockTable, c.Start + c.Length));
            return new ScheduledChunk(c.Seq, c.Start, c.Length);
        }).ToList();
        var decodes = model.AttentionMode != AttentionMode.Naive;
        var rows = TorchSharp.torch.tensor(Enumerable.Range(0, chunks.Sum(c => c.Length)).Select(i => (long)i).ToArray());
        using var logits = split == 0 ? Forward(BatchBuilder.Build(scheduled, Allocator, model.Options.Device, decodes)) : ForwardSplit();
        var flat = logits.data<float>().ToArray();

        TorchSharp.torch.Tensor Forward(ForwardBatch batch)
        {
            using (batch) return model.Forward(batch, Cache, rows);
        }

        TorchSharp.torch.Tensor ForwardSplit()
        {
            using var a = BatchBuilder.Build(scheduled.Take(split).ToList(), Allocator, model.Options.Device, decodes);
            using var b = BatchBuilder.Build(scheduled.Skip(split).ToList(), Allocator, model.Options.Device, decodes);
            return model.Forward(a, b, Cache, rows);
        }
        var vocab = model.Config.VocabSize;
        var result = new float[chunks.Length][][];
        var row = 0;
        for (var i = 0; i < chunks.Length; i++)
        {
            result[i] = new float[chunks[i].Length][];
            for (var j = 0; j < chunks[i].Length; j++, row++) result[i][j] = flat.AsSpan(row * vocab, vocab).ToArray();
        }
        return result;
    }
}
