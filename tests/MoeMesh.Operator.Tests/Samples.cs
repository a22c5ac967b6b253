using k8s;
using k8s.Models;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Tests;

/// <summary>The documented sample resources and the checked-in CRD, as the tests use them.</summary>
public static class Samples
{
    public static string Path(string file) => System.IO.Path.Combine(Programs.RepositoryRoot(), "docs", "samples", file);

    public static string Text(string file) => File.ReadAllText(Path(file));

    /// <summary>A sample as the API server would hand it to the operator: with a uid, namespace and generation.</summary>
    public static MoeDeployment Load(string file, string? ns = null)
    {
        var md = KubernetesYaml.Deserialize<MoeDeployment>(Text(file));
        md.Metadata.NamespaceProperty = ns ?? md.Metadata.NamespaceProperty ?? "default";
        md.Metadata.Uid = "3f8a7c56-0000-4000-8000-000000000001";
        md.Metadata.Generation = 1;
        return md;
    }

    public static V1CustomResourceDefinition Crd() =>
        KubernetesYaml.Deserialize<V1CustomResourceDefinition>(File.ReadAllText(System.IO.Path.Combine(Programs.RepositoryRoot(), "charts", "moemesh", "crds", "moedeployments.moemesh.dev.yaml")));
}
