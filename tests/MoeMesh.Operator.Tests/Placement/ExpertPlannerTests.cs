using System.Diagnostics;
using MoeMesh.Operator.Placement;
using Xunit.Abstractions;

namespace MoeMesh.Operator.Tests.Placement;

/// <summary>
/// The placement planner against EPLB's own worked example, on skewed loads of DeepSeek-V3's shape, and after the
/// loads drift, where it must get the balance back while moving a small part of what a fresh plan moves.
/// </summary>
public sealed class ExpertPlannerTests(ITestOutputHelper output)
{
    // DeepSeek-V3: 58 MoE layers of 256 routed experts; 64 expert nodes, each with 2 redundant slots.
    private const int Layers = 58;
    private const int Experts = 256;
    private static readonly PlannerShape V3 = new(64, Experts / 64 + 2, 1);

    [Fact]
    public void EplbReadmeExample_IsBalancedAtLeastAsWellAsEplbsOwnPlan()
    {
        // deepseek-ai/EPLB's README: two layers of 12 experts, 16 copies on 8 GPUs, and the plan eplb.py prints for it.
        double[][] weight =
        [
            [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
            [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
        ];
        int[][] eplbPhy2Log =
        [
            [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
            [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
        ];
        var shape = new PlannerShape(8, 2, 1);
        for (var layer = 0; layer < 2; layer++)
        {
            var eplb = new LayerPlan(eplbPhy2Log[layer].Chunk(2));
            var ours = ExpertPlanner.Fresh(weight[layer], shape);
            output.WriteLine($"layer {layer}: max/mean EPLB {eplb.Imbalance(weight[layer]):0.000}, ours {ours.Imbalance(weight[layer]):0.000}");
            Assert.True(ours.NodeLoads(weight[layer]).Max() <= eplb.NodeLoads(weight[layer]).Max() + 1e-9);
            Assert.All(ours.Nodes, n => Assert.Equal(2, n.Count));
            Assert.All(ours.Replicas(12), c => Assert.True(c >= 1));
        }
    }

    public static TheoryData<string> Distributions() => new("lognormal", "zipf");

    [Theory]
    [MemberData(nameof(Distributions))]
    public void SkewedV3Loads_FreshPlanIsBalanced_AndAfterDriftTheMigrationAwarePlanMovesATenth(string distribution)
    {
        var random = new Random(distribution == "zipf" ? 11 : 7);
        var loads = Enumerable.Range(0, Layers).Select(_ => distribution == "zipf" ? Zipf(random, Experts, 1.0) : LogNormal(random, Experts, 1.0)).ToArray();
        var clock = Stopwatch.StartNew();
        var plans = ExpertPlanner.Fresh(loads, V3);
        var freshSeconds = clock.Elapsed.TotalSeconds;
        var freshImbalance = plans.Select((p, i) => p.Imbalance(loads[i])).Max();
        Assert.True(freshImbalance <= 1.05, $"fresh plan max/mean {freshImbalance:0.000}");

        // The loads drift: each expert's load times a log-normal factor (sigma 0.3).
        var drifted = loads.Select(l => SyntheticLoad.Drift(random, l, 0.3)).ToArray();
        var stale = plans.Select((p, i) => p.Imbalance(drifted[i])).Max();
        var replanned = ExpertPlanner.Fresh(drifted, V3);
        var freshMoves = replanned.Select((p, i) => p.MovesFrom(plans[i])).Sum();
        clock.Restart();
        // A round may load up to 80 copies per layer; the target stops each layer as soon as it is balanced enough.
        var rebalanced = ExpertPlanner.Rebalance(drifted, plans, V3, new MigrationBudget(MaxMoves: 80 * Layers, TargetImbalance: 1.045));
        var rebalanceSeconds = clock.Elapsed.TotalSeconds;
        var moves = rebalanced.Select((p, i) => p.MovesFrom(plans[i])).Sum();
        var after = rebalanced.Select((p, i) => p.Imbalance(drifted[i])).Max();
        output.WriteLine($"{distribution}: fresh max/mean {freshImbalance:0.000} ({freshSeconds:0.000} s for {Layers} layers); after drift {stale:0.000}; " +
            $"fresh re-plan moves {freshMoves} copies, migration-aware moves {moves} ({(double)moves / freshMoves:P1}) to reach {after:0.000} ({rebalanceSeconds:0.000} s)");
        Assert.True(after <= 1.05, $"rebalanced max/mean {after:0.000}");
        Assert.True(moves * 10 <= freshMoves, $"moved {moves} of a fresh plan's {freshMoves}");
        Assert.All(rebalanced.Select((p, i) => p.MovesFrom(plans[i])), m => Assert.True(m <= 80, $"a layer moved {m} copies, over its 80"));
        foreach (var p in rebalanced)
        {
            Assert.All(p.Replicas(Experts), c => Assert.True(c >= V3.MinReplicas));
            Assert.All(p.Nodes, n => Assert.True(n.Count <= V3.SlotsPerNode));
        }
    }

    [Fact]
    public void Plans_AreDeterministic_AndHonourMinimumReplicas()
    {
        var random = new Random(3);
        var load = LogNormal(random, Experts, 1.0);
        var shape = V3 with { MinReplicas = 2, SlotsPerNode = 10 };
        var a = ExpertPlanner.Fresh(load, shape);
        var b = ExpertPlanner.Fresh(load.ToArray(), shape);
        Assert.Equal(a.Nodes.Select(n => n.ToArray()), b.Nodes.Select(n => n.ToArray()));
        Assert.All(a.Replicas(Experts), c => Assert.True(c >= 2));
        var drifted = SyntheticLoad.Drift(random, load, 0.3);
        var budget = new MigrationBudget(40);
        var r1 = ExpertPlanner.Rebalance(drifted, a, shape, budget);
        var r2 = ExpertPlanner.Rebalance(drifted, b, shape, budget);
        Assert.Equal(r1.Nodes.Select(n => n.ToArray()), r2.Nodes.Select(n => n.ToArray()));
        Assert.All(r1.Replicas(Experts), c => Assert.True(c >= 2));
    }

    [Fact]
    public void BalancedPlan_IsLeftAlone_WhenTheGainIsBelowTheThreshold()
    {
        var load = LogNormal(new Random(5), Experts, 1.0);
        var plan = ExpertPlanner.Fresh(load, V3);
        Assert.Same(plan, ExpertPlanner.Rebalance(load, plan, V3, new MigrationBudget(100, TargetImbalance: 1.0, MinGain: 0.05)));
    }

    [Fact]
    public void ANodeGone_ItsExpertsGetHoldersAgain_EvenWithoutBudget()
    {
        var load = LogNormal(new Random(9), Experts, 1.0);
        var plan = ExpertPlanner.Fresh(load, V3);
        var fewer = V3 with { Nodes = 63 };
        var survivors = new LayerPlan(plan.Nodes.Take(63));
        Assert.Contains(survivors.Replicas(Experts), c => c == 0);
        var repaired = ExpertPlanner.Rebalance(load, survivors, fewer, new MigrationBudget(0));
        Assert.All(repaired.Replicas(Experts), c => Assert.True(c >= 1));
        Assert.Equal(63, repaired.NodeCount);
    }

    private static double[] LogNormal(Random r, int n, double sigma) => SyntheticLoad.LogNormal(r, n, sigma);

    private static double[] Zipf(Random r, int n, double s) => SyntheticLoad.Zipf(r, n, s);
}
