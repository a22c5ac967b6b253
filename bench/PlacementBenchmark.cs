using System.Diagnostics;
using MoeMesh.Operator.Placement;

namespace MoeMesh.Bench;

/// <summary>
/// The placement planner at DeepSeek-V3's shape (58 MoE layers x 256 experts, 64 nodes with 2 redundant slots
/// each): balance of a fresh plan, the imbalance a drift of the loads leaves, and what a fresh re-plan and the
/// migration-aware rebalance each move to fix it, with their times (second run of each, after warm-up).
/// </summary>
public static class PlacementBenchmark
{
    public static void Run()
    {
        const int layers = 58, experts = 256;
        var shape = new PlannerShape(64, experts / 64 + 2, 1);
        var round = new MigrationBudget(MaxMoves: 80 * layers, TargetImbalance: 1.045);
        Console.WriteLine($"shape: {layers} MoE layers x {experts} experts, {shape.Nodes} nodes x {shape.SlotsPerNode} slots, {shape.MinReplicas} holder(s) minimum; {Environment.ProcessorCount} cores");
        Console.WriteLine("loads      fresh  fresh-ms  drifted  replan-moves  rebalance-moves  ratio  rebalanced  rebalance-ms");
        foreach (var (name, seed) in new[] { ("lognormal", 7), ("zipf", 11) })
        {
            var random = new Random(seed);
            var loads = Enumerable.Range(0, layers).Select(_ => name == "zipf" ? SyntheticLoad.Zipf(random, experts, 1.0) : SyntheticLoad.LogNormal(random, experts, 1.0)).ToArray();
            ExpertPlanner.Fresh(loads, shape);
            var clock = Stopwatch.StartNew();
            var plans = ExpertPlanner.Fresh(loads, shape);
            var freshMs = clock.Elapsed.TotalMilliseconds;
            var drifted = loads.Select(l => SyntheticLoad.Drift(random, l, 0.3)).ToArray();
            var replanMoves = ExpertPlanner.Fresh(drifted, shape).Select((p, i) => p.MovesFrom(plans[i])).Sum();
            ExpertPlanner.Rebalance(drifted, plans, shape, round);
            clock.Restart();
            var rebalanced = ExpertPlanner.Rebalance(drifted, plans, shape, round);
            var rebalanceMs = clock.Elapsed.TotalMilliseconds;
            var moves = rebalanced.Select((p, i) => p.MovesFrom(plans[i])).Sum();
            double Worst(IReadOnlyList<LayerPlan> p, double[][] l) => p.Select((x, i) => x.Imbalance(l[i])).Max();
            Console.WriteLine($"{name,-10} {Worst(plans, loads),5:0.000}  {freshMs,8:0}  {Worst(plans, drifted),7:0.000}  {replanMoves,12}  {moves,15}  {(double)moves / replanMoves,5:P1}  {Worst(rebalanced, drifted),10:0.000}  {rebalanceMs,12:0}");
        }
    }
}
