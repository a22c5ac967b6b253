using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace MoeMesh.Testing.KubeApi;

/// <summary>
/// The small JSONPath subset CRD printer columns, scale subresources and field selectors use: ".a.b.c" and
/// ".a[?(@.k=="v")].b".
/// </summary>
public static partial class JsonPaths
{
    public static JsonNode? Get(JsonNode? node, string path)
    {
        foreach (var step in Steps(path))
        {
            if (node is null) return null;
            var m = FilterStep().Match(step);
            if (m.Success)
            {
                node = (node[m.Groups[1].Value] as JsonArray)?.FirstOrDefault(e => e?[m.Groups[2].Value]?.ToString() == m.Groups[3].Value);
                continue;
            }
            node = node is JsonObject o ? o[step] : null;
        }
        return node;
    }

    /// <summary>Sets a plain dotted path, creating objects on the way.</summary>
    public static void Set(JsonObject root, string path, JsonNode? value)
    {
        var steps = Steps(path).ToArray();
        var node = root;
        foreach (var step in steps[..^1])
        {
            if (node[step] is not JsonObject next) node[step] = next = new JsonObject();
            node = next;
        }
        node[steps[^1]] = value;
    }

    private static IEnumerable<string> Steps(string path) =>
        StepPattern().Matches(path.TrimStart('.')).Select(m => m.Value.TrimStart('.'));

    [GeneratedRegex("""(\.?[^.\[]+(\[\?\(@\.[^)]*\)\])?)""")]
    private static partial Regex StepPattern();

    [GeneratedRegex("""^([^\[]+)\[\?\(@\.([^=]+)==["']([^"']*)["']\)\]$""")]
    private static partial Regex FilterStep();
}
