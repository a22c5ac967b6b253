using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using k8s;
using MoeMesh.Operator.Crd;

namespace MoeMesh.Operator.Tests;

/// <summary>The MoeDeployment CRD's schema applied to resources, as the API server validates them.</summary>
public static class CrdSchema
{
    /// <summary>
    /// The CRD's structural schema as JSON Schema (with unknown fields refused, as the API server's strict field
    /// validation does) applied to a YAML resource. CEL rules are the API server's to evaluate, not this check's.
    /// </summary>
    public static EvaluationResults Validate(string yaml) => Validate(Yaml.ToJson(yaml)!);

    /// <summary>As <see cref="Validate(string)"/>, for a resource already as JSON.</summary>
    public static EvaluationResults Validate(JsonNode resource)
    {
        var schema = JsonNode.Parse(KubernetesJson.Serialize(CrdGenerator.Generate().Spec.Versions.Single().Schema.OpenAPIV3Schema))!;
        AsJsonSchema(schema);
        var evaluator = JsonSchema.FromText(schema.ToJsonString());
        using var document = JsonDocument.Parse(resource.ToJsonString());
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

    public static string Errors(EvaluationResults r) =>
        string.Join("; ", (r.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")));
}
