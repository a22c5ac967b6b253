using System.Text.Json;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Kube;
using MoeMesh.Operator.Placement;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Scaling;

/// <summary>
/// Placement rounds of the expert tier, each rolled out make-before-break: first the union (every node also loads
/// what it gains), and once every ready node serves that generation and every ready gateway routes by it
/// (moemesh_expert_placement_generation, moemesh_expert_placement_generation_min), the target itself.
/// Three kinds of round, on the routed load the gateways measured (/metrics/expert-load, summed over the ready
/// gateways; even load while they have measured none):
/// <list type="bullet">
/// <item>rebalancing, every scaling.placement.intervalSeconds: the planner's better placement of the same nodes;</item>
/// <item>filling, at once when the tier grew: the new nodes, added holding nothing, take their share;</item>
/// <item>draining, at once when the tier is to shrink: the nodes that go hand their experts to those that stay, and
/// only then does the StatefulSet shrink (<see cref="ScalingState.Shrunk"/>), so coverage never drops.</item>
/// </list>
/// </summary>
public sealed class PlacementLoop(IKubernetes client, ScalingState state, PodScraper pods, EventRecorder events, ILogger<PlacementLoop> logger)
{
    private readonly Dictionary<(string, string), Round> _rounds = [];

    private sealed class Round
    {
        public DateTime LastStart = DateTime.UtcNow;
        public Queue<(PlacementPlan Plan, IReadOnlySet<int> Gainers)> Pending = new();
        public long WaitFor;
        /// <summary>The nodes that gain expert copies in the phase written: the ones it waits for.</summary>
        public IReadOnlySet<int> Gainers = new HashSet<int>();
        public string Summary = "";
        /// <summary>A drain's count and the placement of the nodes that stay, for when it has rolled out.</summary>
        public (int Nodes, PlacementPlan Plan)? ShrinkTo;
        /// <summary>The node count of the last step, and whether a filling round ran since it last changed.</summary>
        public int Nodes;
        public bool Filled;
        public bool Warned;
    }

    public Task RunAsync(Action<string, string> reconcile, CancellationToken ct) =>
        state.EveryTrackedAsync(TimeSpan.FromSeconds(1), "Placement", async md =>
        {
            Forget();
            await StepAsync(md, reconcile, ct);
        }, logger, ct);

    /// <summary>Drops the rounds of deployments no longer tracked.</summary>
    private void Forget()
    {
        var tracked = state.Tracked().Select(m => (m.Metadata.NamespaceProperty ?? "default", m.Metadata.Name)).ToHashSet();
        foreach (var key in _rounds.Keys.Where(k => !tracked.Contains(k)).ToArray()) _rounds.Remove(key);
    }

    private async Task StepAsync(MoeDeployment md, Action<string, string> reconcile, CancellationToken ct)
    {
        if (!TierCounts.HasExpertTier(md.Spec) || state.NodesInForce(md) is not { } nodes) return;
        var n = Names.Of(md);
        var key = (n.Namespace, n.Instance);
        if (!_rounds.TryGetValue(key, out var round)) _rounds[key] = round = new Round();
        var wanted = state.Counts(md).ExpertNodes;
        var map = await KubeReads.PlacementAsync(client, n, ct);
        var generation = KubeReads.PlacementGeneration(map);

        if (round.WaitFor > 0 && wanted < nodes && round.ShrinkTo is null)
        {
            // The tier is to shrink while a round waits (maybe on a new node that stays Pending): every phase covers
            // every expert the placement before it covered, so the round can stop here and the drain begin.
            await events.RecordAsync(md, EventRecorder.Normal, "PlacementRollout", $"round stopped at generation {round.WaitFor} for expert nodes {nodes} -> {wanted}: {round.Summary}", ct);
            round.Pending.Clear();
            round.WaitFor = 0;
        }
        if (round.WaitFor > 0)
        {
            // A phase is out: the next one waits until the nodes gaining copies serve it and gateways route by it.
            if (generation < round.WaitFor || !await ServedAsync(n, round.WaitFor, round.Gainers, ct)) return;
            if (round.ShrinkTo is not null && wanted >= nodes && round.Pending.Count > 0)
            {
                // The scale-down was taken back while the staying nodes loaded the leaving ones' experts: stop before
                // anything is dropped (the phase in force holds everything the one before it held).
                await events.RecordAsync(md, EventRecorder.Normal, "PlacementRollout", $"drain stopped at generation {round.WaitFor}: {nodes} expert nodes are wanted again", ct);
                round.Pending.Clear();
                round.ShrinkTo = null;
            }
            if (round.Pending.TryDequeue(out var next) && next.Plan.Nodes.Count == nodes)
            {
                state.SetPlacement(md, next.Plan);
                round.Gainers = next.Gainers;
                round.WaitFor = generation + 1;
                await events.RecordAsync(md, EventRecorder.Normal, "PlacementRollout", $"next phase: nodes drop what moved away (generation {generation + 1}); {round.Summary}", ct);
                reconcile(n.Namespace, n.Instance);
                return;
            }
            round.Pending.Clear();
            round.WaitFor = 0;
            await events.RecordAsync(md, EventRecorder.Normal, "PlacementRebalanced", $"generation {generation} in force: {round.Summary}", ct);
            if (round.ShrinkTo is { } shrink)
            {
                round.ShrinkTo = null;
                // Drained for a smaller count: shrink to it, or to what is wanted now if that grew back in between;
                // nodes drained but wanted again are filled by the next round.
                if (wanted < nodes) await ShrinkAsync(md, n, Math.Max(shrink.Nodes, wanted), shrink.Plan.Resized(Math.Max(shrink.Nodes, wanted))!, nodes, reconcile, ct);
                else round.Filled = false;
            }
            return;
        }

        if (map?.Data is not { } data || PlacementPlan.FromDocuments(data, nodes, n.ExpertPod) is not { } current || data.Count != nodes)
            return; // The reconciler has not written the placement for this count yet.
        if (round.Nodes != nodes) (round.Nodes, round.Filled, round.Warned) = (nodes, false, false);
        var draining = wanted < nodes;
        var filling = !draining && !round.Filled && Enumerable.Range(0, nodes).Any(current.HoldsNothing);
        var interval = md.Spec.Scaling?.Placement?.IntervalSeconds ?? 300;
        if (!draining && !filling && (interval <= 0 || DateTime.UtcNow - round.LastStart < TimeSpan.FromSeconds(interval))) return;
        if (!draining && !filling) round.LastStart = DateTime.UtcNow;

        var load = await LoadAsync(n, ct);
        if (load is null)
        {
            if (draining && Enumerable.Range(wanted, nodes - wanted).All(current.HoldsNothing))
                await ShrinkAsync(md, n, wanted, current.Resized(wanted)!, nodes, reconcile, ct);
            // No gateway pod at all (not even one starting): nothing is served that could break, and nothing
            // reports the model's shape to plan by. Gateways that exist but are not ready are waited for.
            else if (draining && (await pods.ReadyEndpointsAsync(n.Namespace, n.Gateway, ct, readyOnly: false)).Count == 0)
                await ShrinkAsync(md, n, wanted, PlacementPlan.Uniform(wanted, md.Spec.Experts?.MinReplicasPerExpert ?? 1), nodes, reconcile, ct, serving: false);
            else if ((draining || filling) && !round.Warned)
            {
                round.Warned = true;
                await events.RecordAsync(md, EventRecorder.Warning, "PlacementWaiting",
                    $"expert nodes {(draining ? $"{nodes} -> {wanted}" : $"{nodes}, some new and empty")}: no ready gateway reports the model's MoE layers (GET /metrics/expert-load) to plan by; retrying", ct);
            }
            return;
        }
        round.Filled |= filling;
        // Rebalancing needs measured load; filling and draining go by even load until there is some.
        if (!load.Value.Measured && !draining && !filling) return;

        var moe = load.Value.Layers.Keys.Order().ToArray();
        var inForce = ModelPlacement.Resolve(current, moe, load.Value.Experts);
        var count = draining ? wanted : nodes;
        var r = md.Spec.Experts?.MinReplicasPerExpert ?? 1;
        var even = (int)Math.Ceiling((double)load.Value.Experts * r / count);
        var slots = md.Spec.Experts?.ExpertsPerNode
            ?? (md.Spec.Experts?.MemoryPerNode is { } memory && await CopyBytesAsync(n, ct) is { } copy
                // The memory budget over one expert copy's bytes, shared by the MoE layers; never below what coverage needs.
                ? Math.Max(even, (int)(memory.ToInt64() / copy / Math.Max(moe.Length, 1)))
                : even + (int)Math.Ceiling((double)(md.Spec.Experts?.RedundantSlots ?? 0) / count));
        var p = md.Spec.Scaling?.Placement;
        // A filling round may fill the new nodes' slots on every layer, and balances as far as that goes (with many
        // nodes one empty node hardly moves max/mean, so the usual target would leave it empty): capacity was added
        // for the load now.
        var moves = p?.MaxMovesPerRound ?? 256;
        if (filling) moves = Math.Max(moves, Enumerable.Range(0, nodes).Count(current.HoldsNothing) * slots * moe.Length);
        var budget = new MigrationBudget(moves, filling ? 1.0 : p?.TargetImbalance ?? 1.05, draining || filling ? 0 : p?.MinGain ?? 0.02);
        var shape = new PlannerShape(count, Math.Max(slots, inForce.Layers.Values.Max(l => l.Nodes.Take(count).Max(x => x.Count))), Math.Min(r, count));
        LayerPlan[] planned;
        try
        {
            planned = ExpertPlanner.Rebalance(moe.Select(l => (IReadOnlyList<double>)load.Value.Layers[l]).ToArray(), moe.Select(l => inForce.Layers[l]).ToArray(), shape, budget);
        }
        catch (ArgumentException e)
        {
            // E.g. expertsPerNode too small for every expert's holders on fewer nodes: the tier keeps its count.
            if (!round.Warned)
            {
                round.Warned = true;
                await events.RecordAsync(md, EventRecorder.Warning, "PlacementImpossible", $"expert nodes {nodes} -> {count}: {e.Message}", ct);
            }
            return;
        }
        var kept = new ModelPlacement(moe.Select((l, i) => (l, planned[i])).ToDictionary(x => x.l, x => x.Item2));
        // A drained plan still names the leaving nodes (holding nothing) until they are gone.
        var target = kept.Padded(nodes);
        var moved = inForce.MovesTo(target);
        double Worst(ModelPlacement m) => moe.Max(l => m.Layers[l].Imbalance(load.Value.Layers[l]));
        var steps = Rollout.Steps(inForce, target);
        if (steps.Count == 0)
        {
            if (draining) await ShrinkAsync(md, n, wanted, kept.ToPlan(), nodes, reconcile, ct);
            else logger.LogInformation("{Namespace}/{Name}: placement kept (max/mean {Imbalance:0.000})", n.Namespace, n.Instance, Worst(inForce));
            return;
        }
        var why = draining ? $"draining for expert nodes {nodes} -> {wanted}: {string.Join(", ", Enumerable.Range(wanted, nodes - wanted).Select(n.ExpertPod))} hand their experts to the nodes that stay; "
            : filling ? $"filling the new expert nodes ({nodes} in all); " : "";
        round.Summary = $"{why}max/mean node load {Worst(inForce):0.000} -> {Worst(target):0.000}, {moved} expert copies moved";
        // Per phase, the nodes that gain copies over the phase before: those a phase waits for.
        var gainers = new List<IReadOnlySet<int>>();
        var before = inForce;
        foreach (var step in steps)
        {
            var after = ModelPlacement.Resolve(step, moe, load.Value.Experts);
            gainers.Add(after.GainersOver(before));
            before = after;
        }
        round.Pending = new Queue<(PlacementPlan, IReadOnlySet<int>)>(steps.Zip(gainers).Skip(1));
        round.WaitFor = generation + 1;
        round.ShrinkTo = draining ? (wanted, kept.ToPlan()) : null;
        state.SetPlacement(md, steps[0]);
        round.Gainers = gainers[0];
        await events.RecordAsync(md, EventRecorder.Normal, "PlacementRollout",
            $"{(steps.Count == 2 ? "phase 1 of 2: nodes load their new experts" : "one phase")} (generation {generation + 1}); {round.Summary}", ct);
        reconcile(n.Namespace, n.Instance);
    }

    /// <summary>The nodes from <paramref name="nodes"/> on hold nothing: the expert tier shrinks to them.</summary>
    private async Task ShrinkAsync(MoeDeployment md, Names n, int nodes, PlacementPlan plan, int from, Action<string, string> reconcile, CancellationToken ct, bool serving = true)
    {
        state.Shrunk(md, nodes, plan);
        var leaving = string.Join(", ", Enumerable.Range(nodes, from - nodes).Select(n.ExpertPod));
        await events.RecordAsync(md, EventRecorder.Normal, "Drained", serving
            ? $"expert nodes {leaving} hold no experts any more: the tier shrinks {from} -> {nodes}"
            : $"no gateway is ready, so nothing is served: the tier shrinks {from} -> {nodes} at once (without {leaving}) and the placement starts uniform", ct);
        reconcile(n.Namespace, n.Instance);
    }

    /// <summary>
    /// Whether phase <paramref name="generation"/> is in force: every node that gains copies in it is ready and
    /// serves that generation or a later one, and every ready gateway routes by it (the lowest generation among the
    /// nodes in its routing table). Nodes that only keep or drop copies need not answer: a leaving node that is not
    /// ready does not hold a drain up, while a new holder that is not ready does hold its round (nothing is dropped
    /// before another holder serves it).
    /// </summary>
    private async Task<bool> ServedAsync(Names n, long generation, IReadOnlySet<int> gainers, CancellationToken ct)
    {
        var nodes = (await pods.ReadyPodsAsync(n.Namespace, n.Experts, ct)).Where(p => p.Name is not null).GroupBy(p => p.Name!).ToDictionary(g => g.Key, g => g.First().Url);
        var gateways = await pods.ReadyAsync(n.Namespace, n.Gateway, ct);
        if (gateways.Count == 0) return false;
        foreach (var i in gainers)
            if (!nodes.TryGetValue(n.ExpertPod(i), out var node)
                || PrometheusText.Sum(await pods.MetricsAsync(node, ct) ?? "", "moemesh_expert_placement_generation") is not { } g || g < generation) return false;
        foreach (var gateway in gateways)
            if (PrometheusText.Sum(await pods.MetricsAsync(gateway, ct) ?? "", "moemesh_expert_placement_generation_min") is not { } g || g < generation) return false;
        return true;
    }

    /// <summary>The bytes of one expert copy, from a ready node that holds some (/v1/experts); null when none reports.</summary>
    private async Task<long?> CopyBytesAsync(Names n, CancellationToken ct)
    {
        foreach (var node in await pods.ReadyAsync(n.Namespace, n.Experts, ct))
        {
            if (await pods.GetAsync(node, "v1/experts", ct) is not { } text) continue;
            using var doc = JsonDocument.Parse(text);
            var copies = doc.RootElement.GetProperty("layers").EnumerateArray().Sum(l => l.GetProperty("experts").GetArrayLength());
            var bytes = doc.RootElement.GetProperty("expert_bytes").GetInt64();
            if (copies > 0 && bytes > 0) return bytes / copies;
        }
        return null;
    }

    /// <summary>
    /// The routed load per MoE layer and expert, summed over the ready gateways (even load, Measured false, when
    /// none has routed a token in its window); null when no gateway reports.
    /// </summary>
    private async Task<(Dictionary<int, double[]> Layers, int Experts, bool Measured)?> LoadAsync(Names n, CancellationToken ct)
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
        if (sum is null || sum.Count == 0) return null;
        var measured = sum.Values.Any(l => l.Sum() > 0);
        if (!measured) foreach (var l in sum.Values) Array.Fill(l, 1.0);
        return (sum, experts, measured);
    }
}
