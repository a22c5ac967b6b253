using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Desired;

/// <summary>
/// Replica counts of both tiers: the inputs the autoscaler decides. Without one, the spec's fixed counts
/// or its minimums hold.
/// </summary>
public sealed record TierCounts(int Gateways, int ExpertNodes)
{
    public static TierCounts FromSpec(MoeDeploymentSpec spec) => new(
        spec.Gateway?.Replicas ?? spec.Gateway?.MinReplicas ?? 1,
        spec.Experts?.Nodes ?? spec.Experts?.MinNodes ?? 0);

    /// <summary>Whether the deployment has an expert tier at all (else the gateways run every expert).</summary>
    public static bool HasExpertTier(MoeDeploymentSpec spec) => (spec.Experts?.Nodes ?? 0) > 0 || spec.Experts?.MinNodes is not null;
}
