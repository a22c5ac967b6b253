using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Placement;
using MoeMesh.Operator.Resources;
using MoeMesh.Operator.Scaling;

namespace MoeMesh.Operator.Tests.Scaling;

/// <summary>
/// Resizing the expert tier make-before-break: the counts the reconciler applies (a larger count at once, a smaller
/// one only once the leaving nodes hold nothing) and the placement documents resized with the tier.
/// </summary>
public sealed class ResizeTests
{
    private static MoeDeployment Deployment(int nodes) => new()
    {
        Metadata = new() { Name = "m", NamespaceProperty = "default" },
        Spec = new MoeDeploymentSpec
        {
            Model = new ModelSource { Path = "/demo" },
            Gateway = new GatewayTierSpec { Replicas = 1 },
            Experts = new ExpertTierSpec { Nodes = nodes },
        },
    };

    [Fact]
    public void AGrownTier_AppliesAtOnce_AShrunkOne_OnlyOnceDrained()
    {
        var state = new ScalingState();
        var md = Deployment(3);
        state.Track(md);
        Assert.Equal(3, state.Applied(md, live: null).ExpertNodes);

        md.Spec.Experts!.Nodes = 5;
        state.Track(md);
        Assert.Equal(5, state.Applied(md, live: null).ExpertNodes);

        md.Spec.Experts.Nodes = 2;
        state.Track(md);
        Assert.Equal(5, state.Applied(md, live: null).ExpertNodes);
        Assert.Equal(2, state.Counts(md).ExpertNodes);

        var drained = PlacementPlan.Uniform(2, 1);
        state.Shrunk(md, 2, drained);
        Assert.Equal(2, state.Applied(md, live: null).ExpertNodes);
        Assert.Same(drained, state.Placement(md, 2));
    }

    [Fact]
    public void ANewLeader_KeepsTheLiveCount_UntilItHasDrained()
    {
        // The StatefulSet runs 4 nodes and the spec asks for 2: a new operator must not shrink undrained nodes.
        var state = new ScalingState();
        var md = Deployment(2);
        state.Track(md);
        Assert.Equal(4, state.Applied(md, live: 4).ExpertNodes);
        Assert.Equal(4, state.NodesInForce(md));
        // Without a StatefulSet yet, the wanted count.
        var fresh = new ScalingState();
        fresh.Track(md);
        Assert.Equal(2, fresh.Applied(md, live: null).ExpertNodes);
    }

    [Fact]
    public void APlan_GrowsWithEmptyNodes_AndShrinksOnlyOverEmptyOnes()
    {
        var plan = PlacementPlan.Uniform(2, 1);
        var grown = plan.Resized(3)!;
        Assert.Equal(3, grown.Nodes.Count);
        Assert.Equal(plan.Nodes[0], grown.Nodes[0]);
        Assert.Equal(plan.Nodes[1], grown.Nodes[1]);
        Assert.True(grown.HoldsNothing(2));
        Assert.False(grown.HoldsNothing(0));
        Assert.Equal("""{"generation":7,"layers":{"*":[]}}""", grown.Document(2, 7));

        Assert.Null(plan.Resized(1));
        var back = grown.Resized(2)!;
        Assert.Equal(2, back.Nodes.Count);
        Assert.Equal(plan.Nodes[1], back.Nodes[1]);
    }

    [Fact]
    public void ADrain_PlannedOnTheNodesThatStay_KeepsEveryExpertCovered_ThroughBothPhases()
    {
        // Four nodes, 16 experts on 3 MoE layers; the tier shrinks to 3: node 3's experts go to the others first.
        const int experts = 16;
        var layers = new[] { 1, 2, 3 };
        var from = ModelPlacement.Resolve(PlacementPlan.Uniform(4, 1), layers, experts);
        var load = Enumerable.Range(0, experts).Select(e => 1.0 + e % 5).ToArray();
        var planned = ExpertPlanner.Rebalance(layers.Select(_ => (IReadOnlyList<double>)load).ToArray(), layers.Select(l => from.Layers[l]).ToArray(),
            new PlannerShape(3, 8, 1), new MigrationBudget(64, 1.05, 0));
        var kept = new ModelPlacement(layers.Select((l, i) => (l, planned[i])).ToDictionary(x => x.l, x => x.Item2));
        var phases = Rollout.Phases(from, kept.Padded(4));
        foreach (var phase in phases)
            foreach (var l in layers)
                Assert.All(phase.Layers[l].Replicas(experts), r => Assert.True(r >= 1));
        // The last phase leaves node 3 empty on every layer, and the nodes that stay hold every expert.
        Assert.All(layers, l => Assert.Empty(phases[^1].Layers[l].Nodes[3]));
        Assert.All(layers, l => Assert.All(kept.Layers[l].Replicas(experts), r => Assert.True(r >= 1)));
        Assert.Equal(3, kept.ToPlan().Nodes.Count);
        // The first phase drops nothing: every copy of the placement before it is still there.
        foreach (var l in layers)
            for (var i = 0; i < 4; i++)
                Assert.Subset(phases[0].Layers[l].Nodes[i].ToHashSet(), from.Layers[l].Nodes[i].ToHashSet());
    }

    [Fact]
    public void ADrainsPhases_WaitOnlyForTheNodesThatGainCopies()
    {
        const int experts = 16;
        var layers = new[] { 1, 2 };
        var from = ModelPlacement.Resolve(PlacementPlan.Uniform(3, 1), layers, experts);
        var planned = ExpertPlanner.Rebalance(layers.Select(_ => (IReadOnlyList<double>)Enumerable.Repeat(1.0, experts).ToArray()).ToArray(),
            layers.Select(l => from.Layers[l]).ToArray(), new PlannerShape(2, 8, 1), new MigrationBudget(64, 1.05, 0));
        var target = new ModelPlacement(layers.Select((l, i) => (l, planned[i])).ToDictionary(x => x.l, x => x.Item2)).Padded(3);
        var phases = Rollout.Phases(from, target);
        // Loading: the staying nodes gain the leaving node's experts; the leaving node (2) gains nothing, so a
        // leaving node that is not ready does not hold the drain up. Dropping: nobody gains.
        Assert.Equal(new HashSet<int> { 0, 1 }, phases[0].GainersOver(from));
        Assert.Empty(phases[1].GainersOver(phases[0]));
    }

    [Fact]
    public void AFillingRound_OnManyNodes_GivesTheEmptyNodeExperts_WhereTheUsualTargetWouldNot()
    {
        // Twenty-one full nodes and a new empty one: max/mean is 22/21 = 1.048, within the usual target of 1.05.
        const int experts = 63;
        var nodes = Enumerable.Range(0, 22).Select(i => i < 21 ? Enumerable.Range(0, experts).Where(e => e % 21 == i) : []).ToArray();
        var load = Enumerable.Repeat(1.0, experts).ToArray();
        var shape = new PlannerShape(22, 4, 1);
        var usual = ExpertPlanner.Rebalance(load, new LayerPlan(nodes), shape, new MigrationBudget(88, 1.05, 0));
        Assert.Empty(usual.Nodes[21]);
        var filling = ExpertPlanner.Rebalance(load, new LayerPlan(nodes), shape, new MigrationBudget(88, 1.0, 0));
        Assert.NotEmpty(filling.Nodes[21]);
        Assert.All(filling.Replicas(experts), r => Assert.True(r >= 1));
    }
}
