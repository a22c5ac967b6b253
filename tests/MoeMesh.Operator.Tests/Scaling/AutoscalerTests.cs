using MoeMesh.Operator.Scaling;

namespace MoeMesh.Operator.Tests.Scaling;

/// <summary>The autoscaler on scripted load with an injected clock: one sample and one decision a second.</summary>
public sealed class AutoscalerTests
{
    private static readonly DateTime T0 = new(2026, 11, 30, 12, 0, 0, DateTimeKind.Utc);

    /// <summary>Runs the script: load(second) is the total over ready pods; pods become ready at once unless told.</summary>
    private static (int Replicas, List<ScalingDecision> Decisions) Run(Autoscaler a, int replicas, int seconds, Func<int, double> load,
        Func<int, int, int>? ready = null, int floor = 0, int start = 0)
    {
        var decisions = new List<ScalingDecision>();
        for (var s = start; s < start + seconds; s++)
        {
            var now = T0.AddSeconds(s);
            a.Observe(now, load(s));
            var r = ready?.Invoke(s, replicas) ?? replicas;
            var d = a.Decide(now, replicas, r, replicas - r, floor);
            decisions.Add(d);
            replicas = d.Desired;
        }
        return (replicas, decisions);
    }

    [Fact]
    public void SustainedLoad_ScalesUp_InSteps_ToWhatTheLoadNeeds()
    {
        // 1.5x what four pods carry: above the tolerance, below the panic threshold.
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 20, MaxStepUp: 1));
        var (replicas, decisions) = Run(a, 4, 120, _ => 60);
        Assert.Equal(6, replicas);
        Assert.All(decisions, d => Assert.False(d.Panicking));
        Assert.Equal([5, 6], decisions.Where(d => d.Changes).Select(d => d.Desired));
        Assert.Contains(decisions, d => d.Reason.StartsWith("scale up: 60 over 60 s needs 6 pod(s)", StringComparison.Ordinal));
    }

    [Fact]
    public void ShortSpike_BelowThePanicThreshold_ChangesNothing()
    {
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 20));
        Run(a, 4, 60, _ => 40);
        // Three seconds at 1.5x: the stable average hardly moves, the panic window stays under 2x.
        var (replicas, decisions) = Run(a, 4, 30, s => s is >= 60 and < 63 ? 60 : 40, start: 60);
        Assert.Equal(4, replicas);
        Assert.All(decisions, d => Assert.StartsWith("no change", d.Reason));
    }

    [Fact]
    public void Surge_Panics_AndThePanickedTierDoesNotShrinkUntilTheStableWindowPasses()
    {
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 40, MaxStepUp: 100));
        Run(a, 4, 60, _ => 40);
        var (replicas, surge) = Run(a, 4, 10, _ => 200, start: 60);
        var first = surge.First(d => d.Changes);
        Assert.True(first.Panicking);
        Assert.StartsWith("scale up: panic", first.Reason);
        Assert.True(first.At - T0 <= TimeSpan.FromSeconds(63), "the panic window reacts within a few seconds");
        Assert.Equal(20, replicas);
        // The surge ends: still panicking, so no scale-down for a stable window.
        var (after, calm) = Run(a, replicas, 50, _ => 40, start: 70);
        Assert.Equal(20, after);
        Assert.All(calm, d => Assert.False(d.Desired < d.Current));
    }

    [Fact]
    public void LowerLoad_ScalesDown_OnlyAfterTheStabilisationWindow_OneStepAtATime()
    {
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 20, ScaleDownStabilization: TimeSpan.FromMinutes(2)));
        Run(a, 6, 120, _ => 60);
        var (replicas, decisions) = Run(a, 6, 400, _ => 20, start: 120);
        Assert.Equal(2, replicas);
        var firstDown = decisions.First(d => d.Desired < d.Current);
        Assert.True(firstDown.At >= T0.AddSeconds(120 + 120), $"first scale-down at {firstDown.At:T}");
        Assert.All(decisions.Where(d => d.Desired < d.Current), d => Assert.Equal(d.Current - 1, d.Desired));
        Assert.Contains(decisions, d => d.Reason.Contains("asked for 6", StringComparison.Ordinal));
    }

    [Fact]
    public void NeverBelowTheCoverageFloor()
    {
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 20, ScaleDownStabilization: TimeSpan.FromSeconds(10)));
        var (replicas, decisions) = Run(a, 8, 300, _ => 1, floor: 5);
        Assert.Equal(5, replicas);
        Assert.All(decisions, d => Assert.True(d.Desired >= 5));
        Assert.Equal((5, "below the minimum of 5 (expert coverage)"), (a.Decide(T0.AddSeconds(301), 3, 3, 0, floor: 5).Desired, a.Decide(T0.AddSeconds(301), 3, 3, 0, floor: 5).Reason));
    }

    [Fact]
    public void APodStuckPending_IsReported_AndDecisionsGoOn()
    {
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 20, ScaleDownStabilization: TimeSpan.FromSeconds(30)));
        // The fifth pod never gets a GPU: at most four are ready.
        var (replicas, decisions) = Run(a, 2, 120, _ => 50, ready: (_, r) => Math.Min(r, 4));
        Assert.Equal(5, replicas);
        Assert.Contains(decisions, d => d.Pending == 1 && d.Reason.Contains("1 pod(s) not ready yet", StringComparison.Ordinal));
        // The load falls: the autoscaler still decides, and scales down through the pending pod.
        var (after, _) = Run(a, replicas, 200, _ => 20, ready: (_, r) => Math.Min(r, 4), start: 120);
        Assert.Equal(2, after);
    }

    [Fact]
    public void NoSamples_MeansNoChange_AndSaysWhy()
    {
        var a = new Autoscaler(new AutoscalerSettings(TargetPerPod: 10, Min: 1, Max: 20));
        var d = a.Decide(T0, 3, 3, 0);
        Assert.False(d.Changes);
        Assert.StartsWith("no change: no load samples", d.Reason);
    }
}
