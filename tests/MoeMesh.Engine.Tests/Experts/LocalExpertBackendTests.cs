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
