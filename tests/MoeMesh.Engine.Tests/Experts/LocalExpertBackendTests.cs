using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;

namespace MoeMesh.Engine.Tests.Experts;

public sealed class LocalExpertBackendTests
{
    [Fact]
    public void HoldingAQuarterOfTheExperts_ReadsAndHoldsAQuarterOfTheirBytes()
    {
        var config = ModelConfig.Load(Path.Combine(TestModels.V3Dir, "config.json"));
        long Load(string spec, out long read)
        {
            using var reader = new CheckpointReader(TestModels.V3Dir);
            var backend = new LocalExpertBackend(config, reader, ComputeOptions.Cpu, ExpertSet.Parse(spec, config.NRoutedExperts));
            read = reader.BytesRead;
            return backend.ByteSize;
        }
        var all = Load("all", out var readAll);
        var quarter = Load("0-3", out var readQuarter);
        Assert.Equal(all / 4, quarter);
        Assert.Equal(readAll / 4, readQuarter);
    }

    [Fact]
    public void CallForAnExpertNotHeld_IsRefused()
    {
        var config = ModelConfig.Load(Path.Combine(TestModels.V3Dir, "config.json"));
        using var reader = new CheckpointReader(TestModels.V3Dir);
        var backend = new LocalExpertBackend(config, reader, ComputeOptions.Cpu, [0, 1]);
        using var x = TorchSharp.torch.ones(1, config.HiddenSize);
        using var ids = TorchSharp.torch.tensor(new long[] { 5 }, [1, 1]);
        using var w = TorchSharp.torch.ones(1, 1);
        Assert.Throws<InvalidOperationException>(() => backend.Compute(config.FirstKDenseReplace, x, ids, w));
    }

    /// <summary>
    /// The packed expert pass (the engine's kernel) equals the libtorch path on the same checkpoint: a decode-sized
    /// call, and a prefill-sized one whose weighted sum runs across the cores, with some tokens sent to no expert.
    /// </summary>
    [Theory]
    [InlineData(3)]
    [InlineData(200)]
    public void PackedPass_EqualsLibtorchPath(int tokens)
    {
        var config = ModelConfig.Load(Path.Combine(TestModels.V3Dir, "config.json"));
        using var reader = new CheckpointReader(TestModels.V3Dir);
        var experts = ExpertSet.Parse("all", config.NRoutedExperts);
        var libtorch = new LocalExpertBackend(config, reader, ComputeOptions.Cpu, experts);
        var packed = new LocalExpertBackend(config, reader, ComputeOptions.Cpu with { PackedExperts = true }, experts);
        var rnd = new Random(tokens);
        var pairs = Enumerable.Range(0, tokens).Where(t => t % 7 != 3)
            .SelectMany(t => Enumerable.Range(0, config.NRoutedExperts).OrderBy(_ => rnd.Next()).Take(config.NumExpertsPerTok).Select(e => (Token: (long)t, Expert: (long)e)))
            .ToArray();
        using var x = TorchSharp.torch.randn(tokens, config.HiddenSize, generator: new TorchSharp.torch.Generator(7));
        using var pairTokens = TorchSharp.torch.tensor(pairs.Select(p => p.Token).ToArray());
        using var pairExperts = TorchSharp.torch.tensor(pairs.Select(p => p.Expert).ToArray());
        using var pairWeights = TorchSharp.torch.tensor(pairs.Select(_ => (float)rnd.NextDouble()).ToArray());
        var layer = config.FirstKDenseReplace;
        using var expected = libtorch.ComputePairs(layer, x, pairTokens, pairExperts, pairWeights);
        using var actual = packed.ComputePairs(layer, x, pairTokens, pairExperts, pairWeights);
        var (e, a) = (expected.data<float>().ToArray(), actual.data<float>().ToArray());
        Assert.Equal(e.Length, a.Length);
        Assert.Contains(e, v => Math.Abs(v) > 1e-2);
        for (var i = 0; i < e.Length; i++) Assert.True(Math.Abs(e[i] - a[i]) <= 1e-5, $"element {i}: {e[i]} against {a[i]}");
    }

    [Theory]
    [InlineData("all", 16)]
    [InlineData("0-3", 4)]
    [InlineData("0,3,9-12", 6)]
    public void ExpertSet_ParsesTheSpec(string spec, int count) => Assert.Equal(count, ExpertSet.Parse(spec, 16).Count);

    [Theory]
    [InlineData("0-16")]
    [InlineData("3-1")]
    [InlineData("x")]
    public void ExpertSet_RejectsBadSpecs(string spec) => Assert.Throws<ArgumentException>(() => ExpertSet.Parse(spec, 16));
}
