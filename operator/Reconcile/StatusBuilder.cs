using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Reconcile;

/// <summary>
/// The status a MoeDeployment should show for what was observed: counts, the conditions Ready, Progressing
/// and Degraded with reasons and messages a user can act on. Pure; a condition keeps its transition time while
/// its status holds.
/// </summary>
public static class StatusBuilder
{
    public const string Ready = "Ready";
    public const string Progressing = "Progressing";
    public const string Degraded = "Degraded";

    public static MoeDeploymentStatus Build(MoeDeployment md, TierCounts counts, PlacementPlan placement, long placementGeneration, Observed seen, DateTime now,
        IList<ScalingDecisionStatus>? decisions = null)
    {
        var n = Names.Of(md);
        var experts = TierCounts.HasExpertTier(md.Spec);
        var generation = md.Metadata.Generation ?? 0;
        var uncovered = experts ? placement.UncoveredShards(seen.ReadyExpertOrdinals) : [];
        var notReady = experts
            ? Enumerable.Range(0, counts.ExpertNodes).Where(i => !seen.ReadyExpertOrdinals.Contains(i)).Select(n.ExpertPod).ToArray()
            : [];
        var tiers = experts
            ? $"gateways {seen.GatewaysReady} of {counts.Gateways} ready, expert nodes {seen.ExpertNodesReady} of {counts.ExpertNodes} ready"
            : $"gateways {seen.GatewaysReady} of {counts.Gateways} ready, every expert inside the gateways";
        var uncoveredText = uncovered.Count == 0 ? ""
            : $"routed experts of shard{(uncovered.Count > 1 ? "s" : "")} {string.Join(", ", uncovered)} (every MoE layer) have no ready holder; "
              + $"expert nodes not ready: {string.Join(", ", notReady.Take(8))}{(notReady.Length > 8 ? $" and {notReady.Length - 8} more" : "")}";

        // Uncovered experts come first: gateways report not-ready while an expert has no holder, so this is then
        // why no gateway is ready too.
        var (readyStatus, readyReason, readyMessage) =
            uncovered.Count > 0 ? (false, "ExpertsUncovered", uncoveredText)
            : seen.GatewaysReady == 0 && seen.Problem is not null ? (false, "ApplyFailed", seen.Problem)
            : seen.GatewaysReady == 0 ? (false, "GatewaysUnavailable",
                counts.Gateways == 0 ? "the gateway tier is scaled to 0 replicas" : $"no gateway is ready ({tiers}); kubectl describe pods -l {n.SelectorText(Names.GatewayComponent)} shows why")
            : (true, "Serving", $"{tiers}; {n.GatewayUrl} serves");
        var rolling = seen.GatewaysReady != counts.Gateways || (experts && seen.ExpertNodesReady != counts.ExpertNodes);
        var (degradedStatus, degradedReason, degradedMessage) =
            seen.Problem is not null ? (true, "ApplyFailed", seen.Problem)
            : uncovered.Count > 0 && seen.ReadyExpertOrdinals.Count > 0 ? (true, "ExpertsUncovered", uncoveredText)
            : (false, "AsExpected", "no fault seen");

        var previous = md.Status?.Conditions ?? [];
        return new MoeDeploymentStatus
        {
            ObservedGeneration = generation,
            Conditions =
            [
                Condition(previous, Ready, readyStatus, readyReason, readyMessage, generation, now),
                Condition(previous, Progressing, rolling, rolling ? "Rolling" : "Stable", rolling ? tiers : $"all replicas ready: {tiers}", generation, now),
                Condition(previous, Degraded, degradedStatus, degradedReason, degradedMessage, generation, now),
            ],
            Gateway = new TierStatus { Desired = counts.Gateways, Ready = seen.GatewaysReady },
            Experts = experts ? new TierStatus { Desired = counts.ExpertNodes, Ready = seen.ExpertNodesReady } : null,
            GatewaySelector = n.SelectorText(Names.GatewayComponent),
            PlacementGeneration = experts ? placementGeneration : null,
            Url = n.GatewayUrl,
            Decisions = decisions,
        };
    }

    /// <summary>The status a deployment the operator refuses shows (e.g. a name too long for its children).</summary>
    public static MoeDeploymentStatus Invalid(MoeDeployment md, string message, DateTime now)
    {
        var generation = md.Metadata.Generation ?? 0;
        var previous = md.Status?.Conditions ?? [];
        return new MoeDeploymentStatus
        {
            ObservedGeneration = generation,
            Conditions =
            [
                Condition(previous, Ready, false, "InvalidSpec", message, generation, now),
                Condition(previous, Progressing, false, "InvalidSpec", message, generation, now),
                Condition(previous, Degraded, true, "InvalidSpec", message, generation, now),
            ],
        };
    }

    private static V1Condition Condition(IList<V1Condition> previous, string type, bool status, string reason, string message, long generation, DateTime now)
    {
        var text = status ? "True" : "False";
        var before = previous.FirstOrDefault(c => c.Type == type);
        return new V1Condition
        {
            Type = type,
            Status = text,
            Reason = reason,
            Message = message,
            ObservedGeneration = generation,
            LastTransitionTime = before is not null && before.Status == text ? before.LastTransitionTime : now,
        };
    }

    /// <summary>The condition of a type; null when absent.</summary>
    public static V1Condition? Find(MoeDeploymentStatus? status, string type) => status?.Conditions?.FirstOrDefault(c => c.Type == type);
}
