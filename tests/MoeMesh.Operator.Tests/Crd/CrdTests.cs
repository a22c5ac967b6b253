using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using k8s;
using MoeMesh.Operator.Crd;
using MoeMesh.Operator.Resources;
using YamlDotNet.RepresentationModel;

namespace MoeMesh.Operator.Tests.Crd;

/// <summary>The MoeDeployment CRD: generated from the C# types, checked in unchanged, and validating the documented samples.</summary>
public sealed class CrdTests
{
    private static string Root => Programs.RepositoryRoot();

    private static string CheckedIn => Path.Combine(Root, "charts", "moemesh", "crds", "moedeployments.moemesh.dev.yaml");

    [Fact]
    public void CheckedInCrd_IsTheGeneratedOne()
    {
        Assert.True(CrdGenerator.Yaml() == File.ReadAllText(CheckedIn),
            $"{CheckedIn} differs from the CRD the C# types give: run 'dotnet run --project operator -- crd > charts/moemesh/crds/moedeployments.moemesh.dev.yaml'");
    }

    [Fact]
    public async Task CrdReference_InDocs_IsTheGeneratedOne()
    {
        var (code, stdout, stderr) = await Programs.RunAsync(Programs.Dll("operator", "moemesh-operator"), ["crd-reference"]);
        Assert.True(code == 0, stderr);
        Assert.True(stdout == File.ReadAllText(Path.Combine(Root, "docs", "crd-reference.md")),
            "docs/crd-reference.md differs from the generated reference: run 'dotnet run --project operator -- crd-reference > docs/crd-reference.md'");
        Assert.Contains("| `spec.experts.minReplicasPerExpert` | integer | min 1; max 16; default `1` |", stdout);
    }

    [Fact]
    public async Task OperatorCrdCommand_PrintsTheGeneratedCrd()
    {
        var (code, stdout, stderr) = await Programs.RunAsync(Programs.Dll("operator", "moemesh-operator"), ["crd"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(CrdGenerator.Yaml(), stdout);
    }

    [Fact]
    public void Crd_HasTheStatusAndScaleSubresources_PrinterColumns_AndTheImmutableModel()
    {
        var version = CrdGenerator.Generate().Spec.Versions.Single();
        Assert.NotNull(version.Subresources.Status);
        Assert.Equal(".spec.gateway.replicas", version.Subresources.Scale.SpecReplicasPath);
        Assert.Equal(["Model", "Ready", "Gateways", "Experts", "Reason", "URL", "Age"], version.AdditionalPrinterColumns.Select(c => c.Name));
        var model = version.Schema.OpenAPIV3Schema.Properties["spec"].Properties["model"];
        Assert.Contains(model.XKubernetesValidations, r => r.Rule == "self == oldSelf");
        // A checkpoint's folder defaults to the volume's root; the demo model needs none.
        Assert.Null(model.Required);
        Assert.Equal("/", model.Properties["path"].DefaultProperty?.ToString());
        Assert.Contains(model.XKubernetesValidations, r => r.Rule.Contains("has(self.demo) && self.demo", StringComparison.Ordinal));
    }

    public static TheoryData<string> Samples() => new(Directory.GetFiles(Path.Combine(Root, "docs", "samples"), "moedeployment-*.yaml").Select(Path.GetFileName)!);

    [Theory]
    [MemberData(nameof(Samples))]
    public void DocumentedSample_IsValid_AndReadsAsAMoeDeployment(string file)
    {
        var yaml = File.ReadAllText(Path.Combine(Root, "docs", "samples", file));
        var result = CrdSchema.Validate(yaml);
        Assert.True(result.IsValid, CrdSchema.Errors(result));
        var resource = KubernetesYaml.Deserialize<MoeDeployment>(yaml);
        Assert.Equal(MoeDeployment.KindName, resource.Kind);
        Assert.StartsWith("/", resource.Spec.Model.Path);
    }

    private const string Valid = """
        apiVersion: moemesh.dev/v1alpha1
        kind: MoeDeployment
        metadata: {name: x}
        spec:
          model: {path: /m, hostPath: {path: /data}}
          gateway: {replicas: 2}
          experts: {nodes: 4, memoryPerNode: 70Gi}
          kvStore: {redis: {url: "redis://r:6379/1"}}
        """;

    [Theory]
    [InlineData("gateway: {replicas: 2}", "gateway: {replicas: 2, replicaz: 3}")] // unknown field
    [InlineData("gateway: {replicas: 2}", "gateway: {replicas: -1}")] // below the range
    [InlineData("gateway: {replicas: 2}", "gateway: {replicas: two}")] // not an integer
    [InlineData("model: {path: /m,", "model: {path: m,")] // relative path
    [InlineData("model: {path: /m, hostPath: {path: /data}}", "model: {path: /m, hostPath: {}}")] // the host path's own path missing
    [InlineData("model: {path: /m, hostPath: {path: /data}}", "model: {path: /m, demo: yes-please}")] // not a boolean
    [InlineData("memoryPerNode: 70Gi", "memoryPerNode: lots")] // not a quantity
    [InlineData("redis://r:6379/1", "redis://user:pw@r:6379/1")] // credentials belong in the Secret
    [InlineData("experts: {nodes: 4,", "experts: {nodes: 4, pullPolicy: Sometimes,")] // a field of another object
    public void WrongResource_IsRejected(string valid, string wrong)
    {
        Assert.True(CrdSchema.Validate(Valid).IsValid, CrdSchema.Errors(CrdSchema.Validate(Valid)));
        Assert.Contains(valid, Valid);
        Assert.False(CrdSchema.Validate(Valid.Replace(valid, wrong)).IsValid, wrong);
    }

    [Fact]
    public void WrongEnum_IsRejected() =>
        Assert.False(CrdSchema.Validate(Valid.Replace("gateway: {replicas: 2}", "gateway: {replicas: 2}\n  images: {pullPolicy: Sometimes}")).IsValid);
}
