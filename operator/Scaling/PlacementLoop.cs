using System.Text.Json;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Placement;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Scaling;

/// <summary>
/// Rebalancing rounds of the expert placement: every scaling.placement.intervalSeconds, the routed load the
/// gateways measured (/metrics/expert-load, summed over the ready gateways) and the placement in force go to the
/// planner; a better placement is rolled out make-before-break: first the union (every node also loads what it
/// gains), and once every ready node serves that generation and every ready gateway routes by it
/// (moemesh_expert_placement_generation, moemesh_expert_placement_generation_min), the target itself.
/// </summary>
public sealed class PlacementLoop(IKubernetes client, ScalingState state, PodScraper pods, EventRecorder events, ILogger<PlacementLoop> logger)
{
    private readonly Dictionary<(string, string), Round> _rounds = [];

    private sealed class Round
    {
        public DateTime LastStart = DateTime.MinValue;
        public Queue<PlacementPlan> Pending = new();
        public long WaitFor;
        public string Summary = "";
    }

    public Task RunAsync(Action<string, string> reconcile, CancellationToken ct) =>
        state.EveryTrackedAsync(TimeSpan.FromSeconds(1), "Placement", md => StepAsync(md, reconcile, ct), logger, ct);

    private async Task StepAsync(MoeDeployment md, Action<string, string> reconcile, CancellationToken ct)
    {
        var interval = md.Spec.Scaling?.Placement?.IntervalSeconds ?? 300;
        if (!TierCounts.HasExpertTier(md.Spec) || interval <= 0) return;
        var n = Names.Of(md);
        var key = (n.Namespace, n.Instance);
        if (!_rounds.TryGetValue(key, out var round)) _rounds[key] = round = new Round { LastStart = DateTime.UtcNow };
        var nodes = state.Counts(md).ExpertNodes;
        var map = await ConfigMapAsync(n, ct);
        var generation = map?.Metadata.Annotations?.TryGetValue(Names.PlacementGenerationAnnotation, out var g) == true && long.TryParse(g, out var v) ? v : 0;

        if (round.WaitFor > 0)
        {
            // A phase is out: the next one waits until nodes serve it and gateways route by it.
            if (generation < round.WaitFor || !await ServedAsync(n, round.WaitFor, ct)) return;
            if (round.Pending.TryDequeue(out var next) && next.Nodes.Count == nodes)
            {
                state.SetPlacement(md, next);
                round.WaitFor = generation + 1;
                await events.RecordAsync(md, EventRecorder.Normal, "PlacementRollout", $"next phase: nodes drop what moved away (generation {generation + 1}); {round.Summary}", ct);
                reconcile(n.Namespace, n.Instance);
                return;
            }
            round.Pending.Clear();
            round.WaitFor = 0;
            await events.RecordAsync(md, EventRecorder.Normal, "PlacementRebalanced", $"generation {generation} in force: {round.Summary}", ct);
            return;
        }
        if (DateTime.UtcNow - round.LastStart < TimeSpan.FromSeconds(interval)) return;
        round.LastStart = DateTime.UtcNow;

        var load = await LoadAsync(n, ct);
        if (load is null || map?.Data is not { } data) return;
        var current = PlacementPlan.FromDocuments(data, nodes, n.ExpertPod);
        if (current is null) return;
        var moe = load.Value.Layers.Keys.Order().ToArray();
        var inForce = ModelPlacement.Resolve(current, moe, load.Value.Experts);
        var r = md.Spec.Experts?.MinReplicasPerExpert ?? 1;
        var slots = md.Spec.Experts?.ExpertsPerNode
            ?? (int)Math.Ceiling((double)load.Value.Experts * r / nodes) + (int)Math.Ceiling((double)(md.Spec.Experts?.RedundantSlots ?? 0) / nodes);
        var p = md.Spec.Scaling?.Placement;
        var budget = new MigrationBudget(p?.MaxMovesPerRound ?? 256, p?.TargetImbalance ?? 1.05, p?.MinGain ?? 0.02);
        var shape = new PlannerShape(nodes, Math.Max(slots, inForce.Layers.Values.Max(l => l.Nodes.Max(x => x.Count))), Math.Min(r, nodes));
        var planned = ExpertPlanner.Rebalance(moe.Select(l => (IReadOnlyList<double>)load.Value.Layers[l]).ToArray(), moe.Select(l => inForce.Layers[l]).ToArray(), shape, budget);
        var target = new ModelPlacement(moe.Select((l, i) => (l, planned[i])).ToDictionary(x => x.l, x => x.Item2));
        var moves = inForce.MovesTo(target);
        double Worst(ModelPlacement m) => moe.Max(l => m.Layers[l].Imbalance(load.Value.Layers[l]));
        var steps = Rollout.Steps(inForce, target);
        if (steps.Count == 0)
        {
            logger.LogInformation("{Namespace}/{Name}: placement kept (max/mean {Imbalance:0.000})", n.Namespace, n.Instance, Worst(inForce));
            return;
        }
        round.Summary = $"max/mean node load {Worst(inForce):0.000} -> {Worst(target):0.000}, {moves} expert copies moved";
        round.Pending = new Queue<PlacementPlan>(steps.Skip(1));
        round.WaitFor = generation + 1;
        state.SetPlacement(md, steps[0]);
        await events.RecordAsync(md, EventRecorder.Normal, "PlacementRollout",
            $"{(steps.Count == 2 ? "phase 1 of 2: nodes load their new experts" : "one phase")} (generation {generation + 1}); {round.Summary}", ct);
        reconcile(n.Namespace, n.Instance);
    }

    private async Task<V1ConfigMap?> ConfigMapAsync(Names n, CancellationToken ct)
    {
        try
        {
            return await client.CoreV1.ReadNamespacedConfigMapAsync(n.Placement, n.Namespace, cancellationToken: ct);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>Whether every ready node serves generation <paramref name="generation"/> or later and every ready gateway routes by it.</summary>
    private async Task<bool> ServedAsync(Names n, long generation, CancellationToken ct)
    {
        var nodes = await pods.ReadyAsync(n.Namespace, n.Experts, ct);
        var gateways = await pods.ReadyAsync(n.Namespace, n.Gateway, ct);
        if (nodes.Count == 0 || gateways.Count == 0) return false;
        foreach (var node in nodes)
            if (PrometheusText.Sum(await pods.MetricsAsync(node, ct) ?? "", "moemesh_expert_placement_generation") is not { } g || g < generation) return false;
        foreach (var gateway in gateways)
            if (PrometheusText.Sum(await pods.MetricsAsync(gateway, ct) ?? "", "moemesh_expert_placement_generation_min") is not { } g || g < generation) return false;
        return true;
    }

    /// <summary>The routed load per MoE layer and expert, summed over the ready gateways; null when none reports.</summary>
    private async Task<(Dictionary<int, double[]> Layers, int Experts)?> LoadAsync(Names n, CancellationToken ct)
    {
        Dictionary<int, double[]>? sum = null;
        var experts = 0;
        foreach (var gateway in await pods.ReadyAsync(n.Namespace, n.Gateway, ct))
        {
            if (await pods.GetAsync(gateway, "metrics/expert-load", ct) is not { } text) continue;
            using var doc = JsonDocument.Parse(text);
            experts = doc.RootElement.GetProperty("experts").GetInt32();
            sum ??= [];
            foreach (var l in doc.RootElement.GetProperty("layers").EnumerateArray())
            {
                var layer = l.GetProperty("layer").GetInt32();
                var tokens = l.GetProperty("tokens").EnumerateArray().Select(t => (double)t.GetInt64()).ToArray();
                if (!sum.TryGetValue(layer, out var acc)) sum[layer] = acc = new double[tokens.Length];
                for (var e = 0; e < tokens.Length && e < acc.Length; e++) acc[e] += tokens[e];
            }
        }
        return sum is null || sum.Values.All(l => l.Sum() == 0) ? null : (sum, experts);
    }
}
