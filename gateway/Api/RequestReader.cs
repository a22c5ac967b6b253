using System.Text.Json;

namespace MoeMesh.Gateway.Api;

/// <summary>Typed reads of a JSON request body; a missing or wrongly typed field is a 400 naming it.</summary>
public sealed class RequestReader(JsonElement root)
{
    public JsonElement Root => root;

    /// <summary>Reads the body (bounded by --max-request-bytes, enforced by Kestrel) as one JSON object.</summary>
    public static async Task<RequestReader> ParseAsync(HttpRequest request, CancellationToken ct)
    {
        try
        {
            var doc = await JsonDocument.ParseAsync(request.Body, cancellationToken: ct);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("the request body must be a JSON object");
            foreach (var field in doc.RootElement.EnumerateObject()) CheckText(field.Value, Name(field));
            return new RequestReader(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiException(413, $"the request body is larger than this server accepts ({request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize} bytes)",
                code: "request_too_large");
        }
        catch (BadHttpRequestException e)
        {
            throw ApiException.BadRequest($"the request body could not be read: {e.Message}");
        }
    }

    /// <summary>
    /// Refuses text that is not Unicode anywhere in a field: JSON may escape a lone surrogate ("\ud83d"), which has no
    /// UTF-8 form (System.Text.Json refuses to read it as a string), in a value or a member name.
    /// </summary>
    private static void CheckText(JsonElement value, string field)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var member in value.EnumerateObject())
                {
                    Name(member, field);
                    CheckText(member.Value, field);
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in value.EnumerateArray()) CheckText(item, field);
                break;
            case JsonValueKind.String:
                try
                {
                    value.GetString();
                }
                catch (InvalidOperationException e)
                {
                    throw NotText(field, e);
                }
                break;
        }
    }

    /// <summary>A member's name, or a 400 naming <paramref name="field"/> (the member itself when null) when it is not Unicode text.</summary>
    private static string Name(JsonProperty member, string? field = null)
    {
        try
        {
            return member.Name;
        }
        catch (InvalidOperationException e)
        {
            throw NotText(field, e);
        }
    }

    private static ApiException NotText(string? field, InvalidOperationException e) =>
        ApiException.BadRequest($"{(field is null ? "a field name" : $"'{field}'")} is not valid Unicode text (a lone surrogate?): {e.Message}", field);

    /// <summary>
    /// Refuses fields this endpoint does not know, duplicated fields, and fields it knows but does not
    /// implement unless they hold the value that changes nothing: nothing a client sends is silently ignored.
    /// </summary>
    public void CheckFields(RequestFields fields)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in root.EnumerateObject())
        {
            if (!seen.Add(p.Name)) throw ApiException.BadRequest($"'{p.Name}' is given more than once", p.Name);
            if (fields.Supported.Contains(p.Name) || p.Value.ValueKind == JsonValueKind.Null && fields.Inert.ContainsKey(p.Name)) continue;
            if (fields.Inert.TryGetValue(p.Name, out var inert))
            {
                if (inert.Holds(p.Value)) continue;
                throw new ApiException(400, $"'{p.Name}' is not supported by this server (accepted only as {inert.Accepted})", p.Name, code: "unsupported_parameter");
            }
            throw new ApiException(400, $"Unrecognized request argument supplied: {p.Name}", p.Name, code: "unknown_parameter");
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
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !double.IsFinite(d)) throw ApiException.BadRequest($"'{name}' must be a number", name);
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
    public IReadOnlyList<string> Strings(string name, int maxCount, int maxLength)
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
        if (list.Any(s => s.Length > maxLength)) throw ApiException.BadRequest($"'{name}' entries hold at most {maxLength} characters", name);
        return list;
    }

    public IReadOnlyList<int> Ints(string name, int maxCount)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind != JsonValueKind.Array || !v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
            throw ApiException.BadRequest($"'{name}' must be a list of integers", name);
        if (v.GetArrayLength() > maxCount) throw ApiException.BadRequest($"'{name}' holds at most {maxCount} entries", name);
        return v.EnumerateArray().Select(e => e.GetInt32()).ToList();
    }
}
