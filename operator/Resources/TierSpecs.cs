using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text.Json.Serialization;
using k8s.Models;
using MoeMesh.Operator.Crd;

namespace MoeMesh.Operator.Resources;

/// <summary>The gateway tier: a fixed replica count, or bounds the autoscaler keeps it within.</summary>
[Cel("!has(self.replicas) || (!has(self.minReplicas) && !has(self.maxReplicas))", "set replicas, or minReplicas and maxReplicas, not both")]
[Cel("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas")]
public sealed class GatewayTierSpec : TierPodSpec
{
    [JsonPropertyName("replicas"), Range(0, 1000)]
    [Description("Gateway replicas (the scale subresource's field); default 1.")]
    public int? Replicas { get; set; }

    [JsonPropertyName("minReplicas"), Range(1, 1000)]
    [Description("Fewest gateway replicas the autoscaler keeps.")]
    public int? MinReplicas { get; set; }

    [JsonPropertyName("maxReplicas"), Range(1, 1000)]
    [Description("Most gateway replicas the autoscaler starts.")]
    public int? MaxReplicas { get; set; }
}

/// <summary>The expert tier: nodes, how many experts each holds, and how many holders each expert has.</summary>
[Cel("!has(self.nodes) || (!has(self.minNodes) && !has(self.maxNodes))", "set nodes, or minNodes and maxNodes, not both")]
[Cel("!has(self.minNodes) || !has(self.maxNodes) || self.minNodes <= self.maxNodes", "minNodes must not exceed maxNodes")]
[Cel("!(has(self.expertsPerNode) && has(self.memoryPerNode))", "set expertsPerNode or memoryPerNode, not both")]
public sealed class ExpertTierSpec : TierPodSpec
{
    [JsonPropertyName("nodes"), Range(0, 4096)]
    [Description("Expert nodes; 0 runs every expert inside the gateways; default 0.")]
    public int? Nodes { get; set; }

    [JsonPropertyName("minNodes"), Range(1, 4096)]
    [Description("Fewest expert nodes the autoscaler keeps.")]
    public int? MinNodes { get; set; }

    [JsonPropertyName("maxNodes"), Range(1, 4096)]
    [Description("Most expert nodes the autoscaler starts.")]
    public int? MaxNodes { get; set; }

    [JsonPropertyName("expertsPerNode"), Range(1, 65536)]
    [Description("Expert slots of each node per MoE layer; default: the routed experts spread evenly with the redundant slots.")]
    public int? ExpertsPerNode { get; set; }

    [JsonPropertyName("memoryPerNode")]
    [Description("Memory budget of each node's experts (e.g. 70Gi); slots follow from the experts' size.")]
    public ResourceQuantity? MemoryPerNode { get; set; }

    [JsonPropertyName("minReplicasPerExpert"), Range(1, 16), DefaultValue(1)]
    [Description("Ready holders every expert keeps, through scale-down and placement changes.")]
    public int? MinReplicasPerExpert { get; set; }

    [JsonPropertyName("redundantSlots"), Range(0, 65536), DefaultValue(0)]
    [Description("Extra expert slots per MoE layer over the whole tier, for replicas of hot experts (EPLB's redundant experts).")]
    public int? RedundantSlots { get; set; }
}

/// <summary>How the pods of a tier run: the same fields for both tiers.</summary>
public abstract class TierPodSpec
{
    [JsonPropertyName("resources")]
    [Description("CPU, memory and nvidia.com/gpu of each pod of the tier.")]
    public V1ResourceRequirements? Resources { get; set; }

    [JsonPropertyName("nodeSelector")]
    [Description("Node labels a pod of the tier must match.")]
    public IDictionary<string, string>? NodeSelector { get; set; }

    [JsonPropertyName("tolerations"), MaxLength(32)]
    [Description("Taints the pods of the tier tolerate.")]
    public IList<V1Toleration>? Tolerations { get; set; }

    [JsonPropertyName("extraArgs"), MaxLength(64)]
    [Description("More options of the tier's program (moemesh-gateway or moemesh-expert-node), e.g. [\"--max-running\", \"128\"].")]
    public IList<string>? ExtraArgs { get; set; }
}

public sealed class KvStoreSpec
{
    [JsonPropertyName("redis"), Required]
    [Description("A Redis the gateways share latent KV pages through.")]
    public RedisStoreSpec Redis { get; set; } = new();
}

public sealed class RedisStoreSpec
{
    [JsonPropertyName("url"), Required, RegularExpression("^rediss?://[^@/]+(:[0-9]+)?(/[0-9]+)?$")]
    [Description("redis://HOST:PORT[/DB] or rediss://... (TLS), without credentials: the password comes from passwordSecret.")]
    public string Url { get; set; } = "";

    [JsonPropertyName("passwordSecret")]
    [Description("The Secret key holding the Redis password.")]
    public SecretKeyRef? PasswordSecret { get; set; }

    [JsonPropertyName("keyPrefix"), StringLength(64, MinimumLength = 1)]
    [Description("Prefix of the page keys; default: the MoeDeployment's namespace and name.")]
    public string? KeyPrefix { get; set; }
}

/// <summary>A key of a Secret in the MoeDeployment's namespace.</summary>
public sealed class SecretKeyRef
{
    [JsonPropertyName("name"), Required, StringLength(253, MinimumLength = 1)]
    [Description("Name of the Secret.")]
    public string Name { get; set; } = "";

    [JsonPropertyName("key"), Required, StringLength(253, MinimumLength = 1)]
    [Description("Key of the value in the Secret.")]
    public string Key { get; set; } = "";
}

/// <summary>
/// How the operator scales the tiers that have bounds (min/max) and when it may act: Knative's stable and panic
/// windows, HPA's scale-down stabilisation and step limits. A tier with a fixed count (replicas, nodes) is left
/// to that count (and to kubectl scale, an HPA or KEDA through the scale subresource).
/// </summary>
public sealed class ScalingSpec
{
    [JsonPropertyName("gateway")]
    [Description("The gateway tier's metric and target per ready gateway.")]
    public GatewayScalingSpec? Gateway { get; set; }

    [JsonPropertyName("experts")]
    [Description("The expert tier's metric and target per ready node.")]
    public ExpertScalingSpec? Experts { get; set; }

    [JsonPropertyName("stableWindowSeconds"), Range(6, 3600), DefaultValue(60)]
    [Description("The load is averaged over this window for ordinary decisions.")]
    public int? StableWindowSeconds { get; set; }

    [JsonPropertyName("panicWindowSeconds"), Range(1, 600), DefaultValue(6)]
    [Description("The short window that reacts to surges: at panicThreshold x the ready capacity, the tier scales up at once and does not shrink for a stable window.")]
    public int? PanicWindowSeconds { get; set; }

    [JsonPropertyName("panicThreshold"), Range(1.1, 10.0), DefaultValue(2.0)]
    [Description("Multiple of the ready capacity that the panic window's load must reach to panic.")]
    public double? PanicThreshold { get; set; }

    [JsonPropertyName("tolerance"), Range(0.0, 0.5), DefaultValue(0.1)]
    [Description("No change while the load per ready pod is within this fraction of the target.")]
    public double? Tolerance { get; set; }

    [JsonPropertyName("scaleDownStabilizationSeconds"), Range(0, 3600), DefaultValue(300)]
    [Description("A tier shrinks only to the highest count any decision of this window asked for.")]
    public int? ScaleDownStabilizationSeconds { get; set; }

    [JsonPropertyName("maxScaleUpStep"), Range(1, 1000), DefaultValue(4)]
    [Description("Most pods one decision adds.")]
    public int? MaxScaleUpStep { get; set; }

    [JsonPropertyName("maxScaleDownStep"), Range(1, 1000), DefaultValue(1)]
    [Description("Most pods one decision removes.")]
    public int? MaxScaleDownStep { get; set; }

    [JsonPropertyName("placement")]
    [Description("Rebalancing the expert placement from the gateways' measured load.")]
    public PlacementSpec? Placement { get; set; }
}

public sealed class PlacementSpec
{
    [JsonPropertyName("intervalSeconds"), Range(0, 86400), DefaultValue(300)]
    [Description("Time between rebalancing rounds; 0 turns rebalancing off (when the expert tier grows or shrinks, experts still move onto the new nodes or off the leaving ones, make-before-break).")]
    public int? IntervalSeconds { get; set; }

    [JsonPropertyName("maxMovesPerRound"), Range(1, 1000000), DefaultValue(256)]
    [Description("Most expert copies the nodes load in one round, over all MoE layers.")]
    public int? MaxMovesPerRound { get; set; }

    [JsonPropertyName("targetImbalance"), Range(1.0, 4.0), DefaultValue(1.05)]
    [Description("A layer is balanced enough when its busiest node carries at most this multiple of the mean.")]
    public double? TargetImbalance { get; set; }

    [JsonPropertyName("minGain"), Range(0.0, 1.0), DefaultValue(0.02)]
    [Description("A round whose improvement of max/mean is below this is skipped: moving weights is not free.")]
    public double? MinGain { get; set; }
}

/// <summary>What a gateway's load is measured in.</summary>
public enum GatewayMetric
{
    /// <summary>Requests waiting for a slot (moemesh_requests_waiting) plus those running (moemesh_requests_running).</summary>
    Requests,
    /// <summary>Fraction of the KV cache in use (moemesh_kv_cache_usage_ratio).</summary>
    KvCacheUsage,
    /// <summary>Mean time to first token in seconds over the sampling interval (moemesh_time_to_first_token_seconds).</summary>
    TimeToFirstToken,
}

public sealed class GatewayScalingSpec
{
    [JsonPropertyName("metric"), DefaultValue("Requests")]
    [Description("Requests (waiting plus running per gateway), KvCacheUsage (fraction of the KV cache in use) or TimeToFirstToken (mean seconds to the first token of the requests a gateway served in the sampling interval).")]
    public GatewayMetric? Metric { get; set; }

    [JsonPropertyName("target"), Range(0.01, 100000.0)]
    [Description("Target per ready gateway; default 32 requests, 0.8 of the KV cache, or 2 seconds to the first token.")]
    public double? Target { get; set; }
}

public sealed class ExpertScalingSpec
{
    [JsonPropertyName("targetBusy"), Range(0.01, 1.0), DefaultValue(0.7)]
    [Description("Target fraction of time each ready expert node spends computing (from moemesh_expert_compute_seconds).")]
    public double? TargetBusy { get; set; }

    [JsonPropertyName("targetQueueSeconds"), Range(0.0001, 60.0)]
    [Description("Optional target of the mean time a dispatch waits in a node's queue before its experts run (from moemesh_expert_queue_seconds). When set, the tier scales on whichever of busy time and queueing is further above its target.")]
    public double? TargetQueueSeconds { get; set; }
}
