using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace MoeMesh.Operator.Resources;

/// <summary>One served MoE model: a gateway tier, an expert tier, their placement and KV store (moemesh.dev/v1alpha1).</summary>
public sealed class MoeDeployment : IKubernetesObject<V1ObjectMeta>, ISpec<MoeDeploymentSpec>, IStatus<MoeDeploymentStatus?>
{
    public const string Group = "moemesh.dev";
    public const string Version = "v1alpha1";
    public const string KindName = "MoeDeployment";
    public const string Plural = "moedeployments";
    public const string Singular = "moedeployment";
    public const string ShortName = "moed";

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = $"{Group}/{Version}";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = KindName;

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public MoeDeploymentSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public MoeDeploymentStatus? Status { get; set; }
}

/// <summary>A list of MoeDeployments, as the API server returns it.</summary>
public sealed class MoeDeploymentList : IKubernetesObject<V1ListMeta>, IItems<MoeDeployment>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = $"{MoeDeployment.Group}/{MoeDeployment.Version}";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = MoeDeployment.KindName + "List";

    [JsonPropertyName("metadata")]
    public V1ListMeta Metadata { get; set; } = new();

    [JsonPropertyName("items")]
    public IList<MoeDeployment> Items { get; set; } = [];
}
