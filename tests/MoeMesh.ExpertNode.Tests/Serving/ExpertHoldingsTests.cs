using Microsoft.Extensions.Logging.Abstractions;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Experts;
using MoeMesh.ExpertNode.Serving;
using static TorchSharp.torch;

namespace MoeMesh.ExpertNode.Tests.Serving;

public sealed class ExpertHoldingsTests
{
    private static readonly Lazy<string> Dir = new(() => DemoModel.EnsureCached(Path.Combine(Path.GetTempPath(), "moemesh-node-tests"), DemoShape.Tiny, seed: 3));

    [Fact]
    public async Task DroppedExpert_IsNotFreed_WhileADispatchStillUsesIt_EvenWithoutDrain()
    {
        var options = NodeOptions.Parse(["--model", Dir.Value, "--experts", "0-7", "--drain-seconds", "0"], _ => null)!;
        var holdings = new ExpertHoldings(options, new NodeMetrics(), NullLogger<ExpertHoldings>.Instance);
        await holdings.StartAsync(CancellationToken.None);
        try
        {
            await Eventually.HoldsAsync(() => Task.FromResult(holdings.State), s => s == ExpertHoldings.PlacementState.Steady, "the first load");
            var eightExperts = holdings.ExpertBytes;
            // A dispatch that took the experts before the change, and is still computing.
            var inFlight = holdings.Acquire()!;
            var change = holdings.ApplyAsync(ExpertPlacement.Uniform(options.Config, "4-11"), CancellationToken.None);
            await Eventually.HoldsAsync(() => Task.FromResult(holdings.State), s => s == ExpertHoldings.PlacementState.WaitingForDispatches, "the change waiting for the dispatch");

            // Expert 2 is dropped, the drain is over, and still it computes for the dispatch that holds it.
            using var hidden = randn(3, options.Config.HiddenSize);
            using var ids = full(3, 1, 2L);
            using var weights = ones(3, 1);
            using var output = inFlight.Backend.Compute(1, hidden, ids, weights);
            Assert.True(output.isfinite().all().item<bool>());
            Assert.False(change.IsCompleted);

            holdings.Release(inFlight);
            await change.WaitAsync(Eventually.DefaultTimeout);
            Assert.Equal(ExpertHoldings.PlacementState.Steady, holdings.State);
            Assert.Equal(eightExperts, holdings.ExpertBytes);
            Assert.False(holdings.Advertised!.Holds(1, 2));
        }
        finally
        {
            await holdings.StopAsync(CancellationToken.None);
        }
    }
}
