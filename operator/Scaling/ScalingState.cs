using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Scaling;

/// <summary>
/// What the autoscaler decided per MoeDeployment, shared with the reconciler (which applies the counts and
/// writes the decisions into status). Only the leader fills it; a new leader starts from the counts in status.
/// </summary>
public sealed class ScalingState
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Ns, string Name), Entry> _entries = [];

    private sealed class Entry
    {
        public MoeDeployment Resource = null!;
        public int? Gateways;
        public int? ExpertNodes;
        public int? NodesInForce;
        public readonly LinkedList<ScalingDecisionStatus> Decisions = new();
        public PlacementPlan? Placement;
    }

    /// <summary>The planner's placement to write, while it matches the node count; null for the uniform one.</summary>
    public PlacementPlan? Placement(MoeDeployment md, int nodes)
    {
        lock (_lock) return _entries.TryGetValue(Key(md), out var e) && e.Placement is { } p && p.Nodes.Count == nodes ? p : null;
    }

    public void SetPlacement(MoeDeployment md, PlacementPlan plan)
    {
        lock (_lock)
            if (_entries.TryGetValue(Key(md), out var e)) e.Placement = plan;
    }

    /// <summary>The deployments to scale: those reconciled lately, with their latest spec.</summary>
    public IReadOnlyList<MoeDeployment> Tracked()
    {
        lock (_lock) return _entries.Values.Select(e => e.Resource).ToArray();
    }

    /// <summary>
    /// Runs <paramref name="step"/> for every tracked deployment each <paramref name="interval"/>; a step that fails
    /// is logged and the others still run.
    /// </summary>
    public async Task EveryTrackedAsync(TimeSpan interval, string what, Func<MoeDeployment, Task> step, ILogger logger, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        while (await timer.WaitForNextTickAsync(ct))
            foreach (var md in Tracked())
            {
                try
                {
                    await step(md);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogWarning("{What} of {Namespace}/{Name}: {Error}", what, md.Metadata.NamespaceProperty, md.Metadata.Name, e.Message);
                }
            }
    }

    public void Track(MoeDeployment md)
    {
        lock (_lock)
        {
            var key = Key(md);
            if (!_entries.TryGetValue(key, out var e)) _entries[key] = e = new Entry();
            e.Resource = md;
        }
    }

    public void Forget(string ns, string name)
    {
        lock (_lock) _entries.Remove((ns, name));
    }

    /// <summary>
    /// The replica counts to apply: a fixed count from the spec; for a tier with bounds, the autoscaler's
    /// decision, else the count in status (a previous leader's), else the minimum; always within the bounds.
    /// </summary>
    public TierCounts Counts(MoeDeployment md)
    {
        var s = md.Spec;
        Entry? e;
        lock (_lock) _entries.TryGetValue(Key(md), out e);
        var gateways = s.Gateway?.Replicas ?? Bounded(e?.Gateways ?? md.Status?.Gateway?.Desired, s.Gateway?.MinReplicas ?? 1, s.Gateway?.MaxReplicas ?? int.MaxValue);
        var nodes = s.Experts?.Nodes ?? (s.Experts?.MinNodes is { } min ? Bounded(e?.ExpertNodes ?? md.Status?.Experts?.Desired, min, s.Experts.MaxNodes ?? int.MaxValue) : 0);
        return new TierCounts(gateways, nodes);
    }

    /// <summary>
    /// The counts to apply to the workloads. Gateways as <see cref="Counts"/>; expert nodes too when they grow (new
    /// nodes start empty, the placement rounds fill them), but a smaller count only once the placement loop has
    /// moved the experts of the nodes that go onto the nodes that stay (<see cref="Shrunk"/>): until then the
    /// expert tier keeps the <paramref name="live"/> count (the StatefulSet's, read when this operator first sees it).
    /// </summary>
    public TierCounts Applied(MoeDeployment md, int? live)
    {
        var wanted = Counts(md);
        lock (_lock)
        {
            if (!_entries.TryGetValue(Key(md), out var e)) return wanted;
            if (!TierCounts.HasExpertTier(md.Spec))
            {
                e.NodesInForce = null;
                return wanted;
            }
            e.NodesInForce ??= live ?? wanted.ExpertNodes;
            if (wanted.ExpertNodes >= e.NodesInForce) e.NodesInForce = wanted.ExpertNodes;
            return wanted with { ExpertNodes = e.NodesInForce.Value };
        }
    }

    /// <summary>The expert node count in force (what the StatefulSet runs); null before the first reconcile.</summary>
    public int? NodesInForce(MoeDeployment md)
    {
        lock (_lock) return _entries.TryGetValue(Key(md), out var e) ? e.NodesInForce : null;
    }

    /// <summary>The nodes beyond <paramref name="nodes"/> hold nothing any more: the expert tier may shrink to it.</summary>
    public void Shrunk(MoeDeployment md, int nodes, PlacementPlan plan)
    {
        lock (_lock)
            if (_entries.TryGetValue(Key(md), out var e))
            {
                e.NodesInForce = nodes;
                e.Placement = plan;
            }
    }

    /// <summary>Records a decision; true when it changes a count (the deployment must be reconciled).</summary>
    public bool Decide(MoeDeployment md, string tier, ScalingDecision d)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(Key(md), out var e)) return false;
            var changed = d.Desired != d.Current;
            if (tier == "gateway") e.Gateways = d.Desired;
            else e.ExpertNodes = d.Desired;
            // Status keeps changes, and a "no change" only when its reason differs in kind from the tier's last entry.
            var last = e.Decisions.FirstOrDefault(x => x.Tier == tier);
            if (changed || last is null || Kind(last.Reason) != Kind(d.Reason))
            {
                e.Decisions.AddFirst(new ScalingDecisionStatus
                {
                    Time = DateTime.SpecifyKind(new DateTime(d.At.Ticks / TimeSpan.TicksPerSecond * TimeSpan.TicksPerSecond), DateTimeKind.Utc),
                    Tier = tier, From = d.Current, To = d.Desired, Reason = d.Reason,
                });
                while (e.Decisions.Count > ScalingDecisionStatus.Kept) e.Decisions.RemoveLast();
                return true;
            }
            return false;
        }
    }

    /// <summary>The decisions for status, newest first; null when the autoscaler has decided nothing for it.</summary>
    public IList<ScalingDecisionStatus>? Decisions(MoeDeployment md)
    {
        lock (_lock) return _entries.TryGetValue(Key(md), out var e) && e.Decisions.Count > 0 ? e.Decisions.ToList() : md.Status?.Decisions;
    }

    private static string Kind(string reason) => reason.Split(':')[0];

    private static int Bounded(int? value, int min, int max) => Math.Clamp(value ?? min, min, Math.Max(min, max));

    private static (string, string) Key(MoeDeployment md) => (md.Metadata.NamespaceProperty ?? "default", md.Metadata.Name);
}
