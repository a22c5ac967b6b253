using System.Text.Json;

namespace MoeMesh.Gateway.Api;

/// <summary>Typed reads of a JSON request body; a missing or wrongly typed field is a 400 naming it.</summary>
public sealed class RequestReader(JsonElement root)
{
    public JsonElement Root => root;

    public static async Task<RequestReader> ParseAsync(HttpRequest request, CancellationToken ct)
    {
        try
        {
            var doc = await JsonDocument.ParseAsync(request.Body, cancellationToken: ct);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("the request body must be a JSON object");
            return new RequestReader(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
    }

    public JsonElement? Get(string name) =>
        root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public int? Int(string name, int min = int.MinValue, int max = int.MaxValue)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i)) throw ApiException.BadRequest($"'{name}' must be an integer", name);
        if (i < min || i > max) throw ApiException.BadRequest($"'{name}' must be between {min} and {max}, got {i}", name);
        return i;
    }

    public long? Long(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out var i)) throw ApiException.BadRequest($"'{name}' must be an integer", name);
        return i;
    }

    public double? Double(string name, double min, double max, bool minExclusive = false)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiException.BadRequest($"'{name}' must be a number", name);
        var d = v.GetDouble();
        if (d > max || d < min || (minExclusive && d == min))
            throw ApiException.BadRequest($"'{name}' must be {(minExclusive ? "greater than" : "at least")} {min} and at most {max}, got {d}", name);
        return d;
    }

    public bool? Bool(string name)
    {
        if (Get(name) is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadRequest($"'{name}' must be a boolean", name),
        };
    }

    public string? String(string name)
    {
        if (Get(name) is not { } v) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw ApiException.BadRequest($"'{name}' must be a string", name);
    }

    /// <summary>A string or a list of strings (the "stop" field).</summary>
    public IReadOnlyList<string> Strings(string name, int maxCount)
    {
        if (Get(name) is not { } v) return [];
        var list = v.ValueKind switch
        {
            JsonValueKind.String => [v.GetString()!],
            JsonValueKind.Array when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => v.EnumerateArray().Select(e => e.GetString()!).ToList(),
            _ => throw ApiException.BadRequest($"'{name}' must be a string or a list of strings", name),
        };
        if (list.Count > maxCount) throw ApiException.BadRequest($"'{name}' holds at most {maxCount} entries", name);
        if (list.Any(s => s.Length == 0)) throw ApiException.BadRequest($"'{name}' entries must not be empty", name);
        return list;
    }

    public IReadOnlyList<int> Ints(string name)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind != JsonValueKind.Array || !v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
            throw ApiException.BadRequest($"'{name}' must be a list of integers", name);
        return v.EnumerateArray().Select(e => e.GetInt32()).ToList();
    }
}
