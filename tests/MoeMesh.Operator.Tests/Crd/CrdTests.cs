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
        var result = Validate(yaml);
        Assert.True(result.IsValid, Errors(result));
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
        Assert.True(Validate(Valid).IsValid, Errors(Validate(Valid)));
        Assert.Contains(valid, Valid);
        Assert.False(Validate(Valid.Replace(valid, wrong)).IsValid, wrong);
    }

    [Fact]
    public void WrongEnum_IsRejected() =>
        Assert.False(Validate(Valid.Replace("gateway: {replicas: 2}", "gateway: {replicas: 2}\n  images: {pullPolicy: Sometimes}")).IsValid);

    /// <summary>
    /// The CRD's structural schema as JSON Schema (with unknown fields refused, as the API server's strict field
    /// validation does) applied to a YAML resource. CEL rules are the API server's to evaluate, not this check's.
    /// </summary>
    private static EvaluationResults Validate(string yaml)
    {
        var schema = JsonNode.Parse(KubernetesJson.Serialize(CrdGenerator.Generate().Spec.Versions.Single().Schema.OpenAPIV3Schema))!;
        AsJsonSchema(schema);
        var evaluator = JsonSchema.FromText(schema.ToJsonString());
        using var document = JsonDocument.Parse(YamlToJson(yaml)!.ToJsonString());
        return evaluator.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
    }

    /// <summary>Objects with properties refuse others; Kubernetes' own keywords (CEL, int-or-string, already an anyOf) go.</summary>
    private static void AsJsonSchema(JsonNode node)
    {
        if (node is JsonObject o)
        {
            foreach (var k in o.Select(p => p.Key).Where(k => k.StartsWith("x-kubernetes-", StringComparison.Ordinal)).ToList()) o.Remove(k);
            if (o["properties"] is JsonObject && o["additionalProperties"] is null) o["additionalProperties"] = false;
            foreach (var (_, child) in o.ToList()) if (child is not null) AsJsonSchema(child);
        }
        else if (node is JsonArray a)
        {
            foreach (var child in a) if (child is not null) AsJsonSchema(child);
        }
    }

    /// <summary>YAML to JSON with YAML 1.2 core-schema typing of plain scalars (as the API server reads manifests).</summary>
    private static JsonNode? YamlToJson(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return Convert(stream.Documents[0].RootNode);

        static JsonNode? Convert(YamlNode node) => node switch
        {
            YamlMappingNode m => new JsonObject(m.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, Convert(kv.Value)))),
            YamlSequenceNode s => new JsonArray(s.Children.Select(Convert).ToArray()),
            YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain } p => Plain(p.Value ?? ""),
            YamlScalarNode q => JsonValue.Create(q.Value),
            _ => throw new NotSupportedException(node.GetType().Name),
        };

        static JsonNode? Plain(string v) =>
            v is "" or "~" or "null" ? null
            : v is "true" or "false" ? JsonValue.Create(v == "true")
            : long.TryParse(v, out var l) ? JsonValue.Create(l)
            : System.Text.RegularExpressions.Regex.IsMatch(v, @"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$") ? JsonValue.Create(double.Parse(v, System.Globalization.CultureInfo.InvariantCulture))
            : JsonValue.Create(v);
    }

    private static string Errors(EvaluationResults r) =>
        string.Join("; ", (r.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")));
}
