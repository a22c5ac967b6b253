using System.Diagnostics;
using MoeMesh.Operator.Placement;
using MoeMesh.Operator.Scaling;

namespace MoeMesh.Bench;

/// <summary>
/// A day of a DeepSeek-V3-shaped expert tier, simulated with the operator's own autoscaler and planner: a
/// diurnal load curve with noise and bursts, expert popularity (Zipf) drifting hour by hour, nodes of a fixed
/// capacity. Every 10 s the autoscaler sees the nodes' busy fraction; every 5 min a placement round rebalances
/// within its budget; a change of the node count re-plans for the new count. Prints the hours and a summary.
/// </summary>
public static class DaySimulation
{
    public static void Run()
    {
        const int layers = 58, experts = 256, slotsPerNode = 8;
        var random = new Random(2026);
        var settings = new AutoscalerSettings(TargetPerPod: 0.7, Min: 32, Max: 128, ScaleDownStabilization: TimeSpan.FromMinutes(5), MaxStepUp: 8, MaxStepDown: 2);
        var autoscaler = new Autoscaler(settings);
        var popularity = Enumerable.Range(0, layers).Select(_ => SyntheticLoad.Zipf(random, experts, 0.8)).ToArray();
        var nodes = 64;
        var shape = new PlannerShape(nodes, slotsPerNode, 1);
        var plans = ExpertPlanner.Fresh(popularity, shape);
        var round = new MigrationBudget(MaxMoves: 40 * layers, TargetImbalance: 1.05, MinGain: 0.02);
        var start = new DateTime(2026, 11, 30, 0, 0, 0, DateTimeKind.Utc);
        long movesRound = 0, movesScale = 0, decisions = 0;
        double nodeSeconds = 0, worstBusy = 0;
        var imbalances = new List<double>();
        var clock = Stopwatch.StartNew();
        Console.WriteLine($"shape: {layers} MoE layers x {experts} experts (Zipf 0.8, drifting), {slotsPerNode} slots per node, busy target {settings.TargetPerPod}, nodes {settings.Min}-{settings.Max}; demand in nodes' worth of work");
        Console.WriteLine("hour  needed(nodes)  nodes  max/mean  busiest  moves(rounds)  moves(scaling)  decisions");
        var hourMovesRound = 0L;
        var hourMovesScale = 0L;
        var hourDecisions = 0;
        for (var tick = 0; tick < 24 * 360; tick++)
        {
            var now = start.AddSeconds(tick * 10);
            var hour = tick / 360.0;
            // Demand in nodes' worth of work: a diurnal curve (peak 90 at 15:00, trough 27 at 3:00), noise, and a
            // 10-minute surge of 1.6x at 9:00 and at 20:00.
            var demand = 90 * (0.65 + 0.35 * Math.Sin((hour - 9) / 24 * 2 * Math.PI)) * (1 + 0.03 * SyntheticLoad.Normal(random));
            if (hour is >= 9 and < 9 + 1.0 / 6 or >= 20 and < 20 + 1.0 / 6) demand *= 1.6;
            // Each layer's work goes to experts by popularity and to nodes by their share of each expert's holders.
            var busy = new double[nodes];
            var worst = 0.0;
            for (var l = 0; l < layers; l++)
            {
                var loads = plans[l].NodeLoads(popularity[l]);
                var total = loads.Sum();
                for (var n = 0; n < nodes; n++) busy[n] += demand * loads[n] / total / layers;
                worst = Math.Max(worst, plans[l].Imbalance(popularity[l]));
            }
            imbalances.Add(worst);
            worstBusy = Math.Max(worstBusy, busy.Max());
            nodeSeconds += nodes * 10;
            autoscaler.Observe(now, busy.Sum());
            var d = autoscaler.Decide(now, nodes, nodes, 0, floor: 1);
            if (d.Changes)
            {
                decisions++;
                hourDecisions++;
                // A new node count: the planner re-plans from the placement in force (new nodes empty, removed nodes' experts re-homed).
                var next = new PlannerShape(d.Desired, slotsPerNode, 1);
                var replanned = ExpertPlanner.Rebalance(popularity, plans.Select(p => Resize(p, d.Desired)).ToArray(), next, round with { MaxMoves = 200 * layers, MinGain = 0 });
                var moved = replanned.Select((p, i) => p.MovesFrom(plans[i])).Sum();
                movesScale += moved;
                hourMovesScale += moved;
                plans = replanned;
                nodes = d.Desired;
                shape = next;
            }
            if (tick % 360 % 30 == 0)
            {
                // Popularity drifts a little every 5 minutes; a placement round follows it.
                popularity = popularity.Select(p => SyntheticLoad.Drift(random, p, 0.05)).ToArray();
                var rebalanced = ExpertPlanner.Rebalance(popularity, plans, shape, round);
                var moved = rebalanced.Select((p, i) => p.MovesFrom(plans[i])).Sum();
                movesRound += moved;
                hourMovesRound += moved;
                plans = rebalanced;
            }
            if ((tick + 1) % 360 == 0)
            {
                Console.WriteLine($"{(tick + 1) / 360,4}  {busy.Sum() / settings.TargetPerPod,13:0.0}  {nodes,5}  {imbalances.Skip(imbalances.Count - 360).Average(),8:0.000}  {busy.Max(),7:0.00}  {hourMovesRound,13}  {hourMovesScale,14}  {hourDecisions,9}");
                hourMovesRound = hourMovesScale = hourDecisions = 0;
            }
        }
        Console.WriteLine($"day: {decisions} scaling decisions, {nodeSeconds / 3600:0} node-hours (fixed at the maximum: {settings.Max * 24}), " +
            $"max/mean per layer mean {imbalances.Average():0.000}, worst {imbalances.Max():0.000}; expert copies moved: {movesRound} by rounds, {movesScale} by scaling; busiest node {worstBusy:0.00}; {clock.Elapsed.TotalSeconds:0} s");
    }

    /// <summary>The plan for another node count: nodes beyond it dropped (their experts re-homed by the planner), new ones empty.</summary>
    private static LayerPlan Resize(LayerPlan p, int nodes) => new(Enumerable.Range(0, nodes).Select(i => i < p.NodeCount ? p.Nodes[i] : []));
}
