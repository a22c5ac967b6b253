using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Tests.Reconcile;

/// <summary>The status a user reads: counts, and conditions whose reasons and messages say what to do.</summary>
public sealed class StatusBuilderTests
{
    private static readonly DateTime T0 = new(2026, 11, 30, 12, 0, 0, DateTimeKind.Utc);

    private static (MoeDeployment Md, TierCounts Counts, PlacementPlan Plan) Gpu(int nodes = 4, int replicas = 1)
    {
        var md = Samples.Load("moedeployment-gpu.yaml");
        md.Spec.Experts!.Nodes = nodes;
        md.Spec.Experts.MinReplicasPerExpert = replicas;
        var counts = TierCounts.FromSpec(md.Spec);
        return (md, counts, PlacementPlan.Uniform(nodes, replicas));
    }

    [Fact]
    public void AllReady_IsServing()
    {
        var (md, counts, plan) = Gpu();
        var s = StatusBuilder.Build(md, counts, plan, 3, new Observed(2, 4, [0, 1, 2, 3]), T0);
        Assert.Equal(("True", "Serving"), Condition(s, "Ready"));
        Assert.Equal(("False", "Stable"), Condition(s, "Progressing"));
        Assert.Equal(("False", "AsExpected"), Condition(s, "Degraded"));
        Assert.Equal((2, 2, 4, 4), (s.Gateway!.Desired, s.Gateway.Ready, s.Experts!.Desired, s.Experts.Ready));
        Assert.Equal((1L, 3L), (s.ObservedGeneration, s.PlacementGeneration));
        Assert.Equal("http://deepseek-v3-gateway.llm.svc:8000", s.Url);
        Assert.Equal("app.kubernetes.io/name=moemesh,app.kubernetes.io/instance=deepseek-v3,app.kubernetes.io/component=gateway", s.GatewaySelector);
    }

    [Fact]
    public void ANodeDown_WithOneHolderPerExpert_NamesTheUncoveredShardAndTheNode()
    {
        var (md, counts, plan) = Gpu();
        var s = StatusBuilder.Build(md, counts, plan, 1, new Observed(2, 3, [0, 1, 3]), T0);
        var ready = StatusBuilder.Find(s, "Ready")!;
        Assert.Equal(("False", "ExpertsUncovered"), (ready.Status, ready.Reason));
        Assert.Contains("shard 2/4", ready.Message);
        Assert.Contains("deepseek-v3-experts-2", ready.Message);
        Assert.Equal(("True", "ExpertsUncovered"), Condition(s, "Degraded"));
        Assert.Equal(("True", "Rolling"), Condition(s, "Progressing"));
    }

    [Fact]
    public void ANodeDown_WithTwoHoldersPerExpert_StillServes()
    {
        var (md, counts, plan) = Gpu(replicas: 2);
        var s = StatusBuilder.Build(md, counts, plan, 1, new Observed(2, 3, [0, 1, 3]), T0);
        Assert.Equal(("True", "Serving"), Condition(s, "Ready"));
        Assert.Equal(("True", "Rolling"), Condition(s, "Progressing"));
    }

    [Fact]
    public void NoGateway_OrARefusedChange_AreNamed()
    {
        var (md, counts, plan) = Gpu();
        var down = StatusBuilder.Build(md, counts, plan, 1, new Observed(0, 4, [0, 1, 2, 3]), T0);
        Assert.Equal(("False", "GatewaysUnavailable"), Condition(down, "Ready"));
        Assert.Contains("kubectl describe pods -l app.kubernetes.io/name=moemesh", StatusBuilder.Find(down, "Ready")!.Message);
        var refused = StatusBuilder.Build(md, counts, plan, 1, new Observed(2, 4, [0, 1, 2, 3], "the API server refused a change (422): bad"), T0);
        Assert.Equal(("True", "ApplyFailed"), Condition(refused, "Degraded"));
        Assert.Equal(("True", "Serving"), Condition(refused, "Ready"));
    }

    [Fact]
    public void TransitionTimes_MoveOnlyWhenTheStatusFlips()
    {
        var (md, counts, plan) = Gpu();
        md.Status = StatusBuilder.Build(md, counts, plan, 1, new Observed(2, 4, [0, 1, 2, 3]), T0);
        var later = StatusBuilder.Build(md, counts, plan, 1, new Observed(2, 4, [0, 1, 2, 3]), T0.AddMinutes(5));
        Assert.All(later.Conditions!, c => Assert.Equal(T0, c.LastTransitionTime));
        var flipped = StatusBuilder.Build(md, counts, plan, 1, new Observed(2, 3, [0, 1, 2]), T0.AddMinutes(5));
        Assert.Equal(T0.AddMinutes(5), StatusBuilder.Find(flipped, "Ready")!.LastTransitionTime);
        Assert.Equal(T0.AddMinutes(5), StatusBuilder.Find(flipped, "Degraded")!.LastTransitionTime);
    }

    [Fact]
    public void WithoutAnExpertTier_ThereIsNoExpertStatus()
    {
        var md = Samples.Load("moedeployment-cpu-demo.yaml");
        md.Spec.Experts = null;
        var counts = TierCounts.FromSpec(md.Spec);
        var s = StatusBuilder.Build(md, counts, PlacementPlan.Uniform(0, 1), 1, new Observed(1, 0, []), T0);
        Assert.Equal(("True", "Serving"), Condition(s, "Ready"));
        Assert.Null(s.Experts);
        Assert.Null(s.PlacementGeneration);
    }

    private static (string, string) Condition(MoeDeploymentStatus s, string type)
    {
        var c = StatusBuilder.Find(s, type)!;
        return (c.Status, c.Reason);
    }
}
