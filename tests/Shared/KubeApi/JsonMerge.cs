using System.Text.Json.Nodes;

namespace MoeMesh.Testing.KubeApi;

/// <summary>JSON merge patch (RFC 7386) and the field removal server-side apply does for fields a manager stopped applying.</summary>
public static class JsonMerge
{
    /// <summary>Merges <paramref name="patch"/> into <paramref name="target"/>: objects recursively, null deletes, anything else replaces.</summary>
    public static void MergePatch(JsonObject target, JsonObject patch)
    {
        foreach (var (key, value) in patch)
        {
            if (value is null) target.Remove(key);
            else if (value is JsonObject po && target[key] is JsonObject to) MergePatch(to, po);
            else target[key] = value.DeepClone();
        }
    }

    /// <summary>Removes from <paramref name="target"/> the fields set in <paramref name="before"/> but not in <paramref name="now"/>.</summary>
    public static void RemoveDropped(JsonObject target, JsonObject before, JsonObject now)
    {
        foreach (var (key, was) in before)
        {
            if (!now.ContainsKey(key)) target.Remove(key);
            else if (was is JsonObject wo && now[key] is JsonObject no && target[key] is JsonObject to) RemoveDropped(to, wo, no);
        }
    }

    /// <summary>The leaf paths of <paramref name="applied"/> whose value differs in <paramref name="current"/>.</summary>
    public static IEnumerable<string> Differences(JsonNode? current, JsonNode? applied, string path = "")
    {
        if (applied is JsonObject ao && current is JsonObject co)
            return ao.SelectMany(kv => Differences(co[kv.Key], kv.Value, $"{path}.{kv.Key}"));
        return JsonNode.DeepEquals(current, applied) ? [] : [path];
    }
}
