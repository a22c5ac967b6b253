using System.Text.Json.Nodes;
using k8s.Models;

namespace MoeMesh.Testing.KubeApi;

/// <summary>A kind the test API server serves: where it lives, whether it has status and scale subresources, its printer columns.</summary>
public sealed record ResourceType(
    string Group, string Version, string Plural, string Kind, bool Namespaced, bool HasStatus = false,
    string? Singular = null, IReadOnlyList<string>? ShortNames = null, V1CustomResourceSubresourceScale? Scale = null,
    IReadOnlyList<V1CustomResourceColumnDefinition>? Columns = null)
{
    public string GroupVersion => Group == "" ? Version : $"{Group}/{Version}";

    public static IReadOnlyList<ResourceType> BuiltIn { get; } =
    [
        new("", "v1", "namespaces", "Namespace", false),
        new("", "v1", "configmaps", "ConfigMap", true),
        new("", "v1", "secrets", "Secret", true),
        new("", "v1", "services", "Service", true, HasStatus: true),
        new("", "v1", "serviceaccounts", "ServiceAccount", true),
        new("", "v1", "events", "Event", true),
        new("", "v1", "pods", "Pod", true, HasStatus: true),
        new("apps", "v1", "deployments", "Deployment", true, HasStatus: true),
        new("apps", "v1", "statefulsets", "StatefulSet", true, HasStatus: true),
        new("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, HasStatus: true),
        new("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        new("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
        new("coordination.k8s.io", "v1", "leases", "Lease", true),
        new("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
        new("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, HasStatus: true),
    ];

    /// <summary>The served version of a CRD, as the API server serves it.</summary>
    public static ResourceType FromCrd(V1CustomResourceDefinition crd)
    {
        var v = crd.Spec.Versions.Single(x => x.Served);
        return new ResourceType(crd.Spec.Group, v.Name, crd.Spec.Names.Plural, crd.Spec.Names.Kind, crd.Spec.Scope == "Namespaced",
            v.Subresources?.Status is not null, crd.Spec.Names.Singular, crd.Spec.Names.ShortNames?.ToArray(), v.Subresources?.Scale, v.AdditionalPrinterColumns?.ToArray());
    }

    /// <summary>Everything of an object but metadata and status: what bumps metadata.generation when it changes.</summary>
    public static JsonObject SpecPart(JsonObject o)
    {
        var copy = new JsonObject();
        foreach (var (k, v) in o)
            if (k is not ("metadata" or "status" or "apiVersion" or "kind")) copy[k] = v?.DeepClone();
        return copy;
    }
}
