using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Tests.Model;

public sealed class MoeGateTests
{
    /// <summary>
    /// A decode step's few rows are routed in the engine's loops, a prefill chunk's in libtorch's ops (whose path the
    /// model tests hold to the float64 reference): the same rows both ways choose the same experts in the same order
    /// with the same weights to float rounding. V3 (sigmoid, bias, top-2 group sums, normalised then scaled), V2
    /// (softmax, group maxima, unnormalised and scaled) and plain greedy top-k.
    /// </summary>
    [Theory]
    [InlineData("v3")]
    [InlineData("v2")]
    [InlineData("greedy")]
    public void FewRows_RouteInLoopsAsLibtorchDoes(string variant)
    {
        var dir = variant switch
        {
            "v3" => TestModels.V3Dir,
            "v2" => TestModels.V2Dir,
            _ => TestModels.Generate("greedy", DemoShape.TinyV2 with { TopkMethod = "greedy" }, DemoModel.WeightFormat.BF16),
        };
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var reader = new CheckpointReader(dir);
        var gate = new MoeGate(config, reader, $"model.layers.{config.FirstKDenseReplace}.mlp.gate", CPU);
        using var scope = NewDisposeScope();
        var rows = MoeGate.LoopRows + 16;
        var x = randn(rows, config.HiddenSize, generator: new TorchSharp.torch.Generator(3)) * 4;

        var (ids, weights) = gate.Route(x);
        var half = rows / 2;
        var (ids0, weights0) = gate.Route(x.narrow(0, 0, half));
        var (ids1, weights1) = gate.Route(x.narrow(0, half, rows - half));
        var loopIds = cat(new[] { ids0, ids1 }, 0).data<long>().ToArray();
        var loopWeights = cat(new[] { weights0, weights1 }, 0).data<float>().ToArray();

        Assert.Equal(ids.data<long>().ToArray(), loopIds);
        var expected = weights.data<float>().ToArray();
        // Weights reach the routed scaling factor (16 for V2): a few float32 ulps of it.
        var tolerance = 2e-6 * config.RoutedScalingFactor;
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - loopWeights[i]) < tolerance, $"weight {i}: {loopWeights[i]} vs {expected[i]}");
        // Routing spreads over the experts: the comparison is not of one repeated choice.
        Assert.True(loopIds.Distinct().Count() > config.NRoutedExperts / 2);
    }
}
