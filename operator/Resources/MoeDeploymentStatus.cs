using System.ComponentModel.DataAnnotations;
using System.ComponentModel;
using System.Text.Json.Serialization;
using k8s.Models;

namespace MoeMesh.Operator.Resources;

/// <summary>What the operator observed of the deployment.</summary>
public sealed class MoeDeploymentStatus
{
    [JsonPropertyName("observedGeneration")]
    [Description("The spec generation this status describes.")]
    public long? ObservedGeneration { get; set; }

    [JsonPropertyName("conditions")]
    [Description("Ready, Progressing and Degraded, with a reason and a message a user can act on.")]
    public IList<V1Condition>? Conditions { get; set; }

    [JsonPropertyName("gateway")]
    [Description("Gateway replicas: desired and ready.")]
    public TierStatus? Gateway { get; set; }

    [JsonPropertyName("experts")]
    [Description("Expert nodes: desired and ready.")]
    public TierStatus? Experts { get; set; }

    [JsonPropertyName("gatewaySelector")]
    [Description("Label selector of the gateway pods (for the scale subresource).")]
    public string? GatewaySelector { get; set; }

    [JsonPropertyName("placementGeneration")]
    [Description("Generation of the expert placement in force on the nodes.")]
    public long? PlacementGeneration { get; set; }

    [JsonPropertyName("url")]
    [Description("In-cluster URL of the gateway Service.")]
    public string? Url { get; set; }

    [JsonPropertyName("decisions"), MaxLength(ScalingDecisionStatus.Kept)]
    [Description("The autoscaler's last decisions, newest first, with the reason and the load they were taken on.")]
    public IList<ScalingDecisionStatus>? Decisions { get; set; }
}

/// <summary>One autoscaling decision as status keeps it.</summary>
public sealed class ScalingDecisionStatus
{
    public const int Kept = 8;

    [JsonPropertyName("time")]
    [Description("When it was taken.")]
    public DateTime Time { get; set; }

    [JsonPropertyName("tier")]
    [Description("gateway or experts.")]
    public string Tier { get; set; } = "";

    [JsonPropertyName("from")]
    [Description("Replicas before.")]
    public int From { get; set; }

    [JsonPropertyName("to")]
    [Description("Replicas decided.")]
    public int To { get; set; }

    [JsonPropertyName("reason")]
    [Description("Why, with the load it was measured at.")]
    public string Reason { get; set; } = "";
}

public sealed class TierStatus
{
    [JsonPropertyName("desired")]
    [Description("Replicas wanted.")]
    public int Desired { get; set; }

    [JsonPropertyName("ready")]
    [Description("Replicas ready.")]
    public int Ready { get; set; }
}
