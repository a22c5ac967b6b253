using System.Text.Json.Nodes;
using YamlDotNet.RepresentationModel;

namespace MoeMesh.Operator.Tests;

/// <summary>YAML read as the API server and Helm read manifests (YAML 1.2 core-schema typing of plain scalars).</summary>
public static class Yaml
{
    /// <summary>YAML to JSON with YAML 1.2 core-schema typing of plain scalars (as the API server reads manifests).</summary>
    public static JsonNode? ToJson(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return Convert(stream.Documents[0].RootNode);
    }

    /// <summary>Every document of a multi-document YAML stream, as JSON (empty documents left out).</summary>
    public static IReadOnlyList<JsonObject> Documents(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return stream.Documents.Select(d => d.RootNode is YamlMappingNode ? Convert(d.RootNode) as JsonObject : null).OfType<JsonObject>().ToArray();
    }

    private static JsonNode? Convert(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, Convert(kv.Value)))),
        YamlSequenceNode s => new JsonArray(s.Children.Select(Convert).ToArray()),
        YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain } p => Plain(p.Value ?? ""),
        YamlScalarNode q => JsonValue.Create(q.Value),
        _ => throw new NotSupportedException(node.GetType().Name),
    };

    private static JsonNode? Plain(string v) =>
        v is "" or "~" or "null" ? null
        : v is "true" or "false" ? JsonValue.Create(v == "true")
        : long.TryParse(v, out var l) ? JsonValue.Create(l)
        : System.Text.RegularExpressions.Regex.IsMatch(v, @"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$") ? JsonValue.Create(double.Parse(v, System.Globalization.CultureInfo.InvariantCulture))
        : JsonValue.Create(v);
}
