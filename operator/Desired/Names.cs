using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Desired;

/// <summary>The names and labels of a MoeDeployment's children, derived from its name alone.</summary>
public sealed record Names(string Namespace, string Instance)
{
    /// <summary>Longest MoeDeployment name: "-experts-4095" and the like must fit in a 63-character DNS label.</summary>
    public const int MaxNameLength = 40;
    public const string FieldManager = "moemesh-operator";
    public const string ManagedByLabel = "app.kubernetes.io/managed-by";
    public const string DeploymentLabel = "moemesh.dev/deployment";
    public const string ComponentLabel = "app.kubernetes.io/component";
    public const string GatewayComponent = "gateway";
    public const string ExpertComponent = "expert-node";
    public const string PlacementGenerationAnnotation = "moemesh.dev/placement-generation";
    public const string PlacementDigestAnnotation = "moemesh.dev/placement-digest";
    public const int GatewayPort = 8000;
    public const int ExpertPort = 9000;

    /// <summary>The selector of everything the operator manages, on any MoeDeployment.</summary>
    public const string ManagedSelector = $"{ManagedByLabel}={FieldManager}";

    public static Names Of(MoeDeployment md) => new(md.Metadata.NamespaceProperty ?? "default", md.Metadata.Name);

    public string Gateway => $"{Instance}-gateway";
    public string Experts => $"{Instance}-experts";
    public string Placement => $"{Instance}-placement";
    public string GatewayAccount => $"{Instance}-gateway";
    public string DiscoveryRole => $"{Instance}-gateway-discovery";

    /// <summary>The expert node pod of StatefulSet ordinal <paramref name="i"/>.</summary>
    public string ExpertPod(int i) => $"{Experts}-{i}";

    /// <summary>The ordinal of an expert node pod of this deployment; null for another name.</summary>
    public int? ExpertOrdinal(string? pod) =>
        pod is not null && pod.StartsWith(Experts + "-", StringComparison.Ordinal) && int.TryParse(pod.AsSpan(Experts.Length + 1), out var i) && i >= 0 ? i : null;

    /// <summary>The placement ConfigMap's key (and mounted file name) of a node.</summary>
    public static string PlacementKey(string pod) => pod + ".json";

    public string GatewayUrl => $"http://{Gateway}.{Namespace}.svc:{GatewayPort}";
    public string Discovery => $"k8s://{Namespace}/{Experts}";

    /// <summary>Labels of every child: the app.kubernetes.io set plus the owning deployment.</summary>
    public Dictionary<string, string> Labels(string? component = null)
    {
        var labels = new Dictionary<string, string>
        {
            ["app.kubernetes.io/name"] = "moemesh",
            ["app.kubernetes.io/instance"] = Instance,
            [ManagedByLabel] = FieldManager,
            [DeploymentLabel] = Instance,
        };
        if (component is not null) labels[ComponentLabel] = component;
        return labels;
    }

    /// <summary>The labels that select a tier's pods (stable for the life of the deployment).</summary>
    public Dictionary<string, string> Selector(string component) => new()
    {
        ["app.kubernetes.io/name"] = "moemesh",
        ["app.kubernetes.io/instance"] = Instance,
        [ComponentLabel] = component,
    };

    public string SelectorText(string component) => string.Join(",", Selector(component).Select(kv => $"{kv.Key}={kv.Value}"));
}
