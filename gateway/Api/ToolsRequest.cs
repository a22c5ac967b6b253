using System.Text.Json;
using System.Text.RegularExpressions;
using MoeMesh.Engine.Sampling.Grammar;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// A chat request's tools, tool_choice and parallel_tool_calls. With tool_choice "auto" (the default when tools are
/// given) the tools reach the chat template and the output's calls are parsed; with "none" the model is not offered
/// them; with "required" or a named function the output is constrained to calls (<see cref="Grammar"/>) whose
/// arguments satisfy the function's parameter schema.
/// </summary>
public sealed partial record ToolsRequest(JsonElement? Tools, IReadOnlySet<string> Names, bool Parallel, SchemaGrammar? Grammar = null)
{
    /// <summary>OpenAI's own cap on tools per request.</summary>
    public const int MaxTools = 128;

    public static readonly ToolsRequest Off = new(null, new HashSet<string>(), true);

    /// <summary>Whether the output is parsed for calls.</summary>
    public bool Parse => Tools is not null;

    public static ToolsRequest Read(RequestReader r)
    {
        var tools = r.Get("tools") is { ValueKind: not JsonValueKind.Null } t ? t : (JsonElement?)null;
        var names = tools is { } list ? FunctionNames(list) : [];
        var choice = r.Get("tool_choice") is { ValueKind: not JsonValueKind.Null } c ? c : (JsonElement?)null;
        var mode = choice switch
        {
            null => "auto",
            { ValueKind: JsonValueKind.String } s when s.GetString() is "auto" or "none" => s.GetString()!,
            { ValueKind: JsonValueKind.String } s when s.GetString() == "required" => "required",
            { ValueKind: JsonValueKind.Object } => "named",
            _ => throw ApiException.BadRequest("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice"),
        };
        var parallel = r.Bool("parallel_tool_calls") ?? true;
        if (mode is "required" or "named")
        {
            if (names.Count == 0) throw ApiException.BadRequest($"'tool_choice' {mode} needs 'tools'", "tool_choice");
            var only = mode == "named" ? Named(choice!.Value, names) : null;
            return new ToolsRequest(tools, names, parallel, ToolCallGrammar.Build(tools!.Value, only, parallel));
        }
        return mode == "none" || names.Count == 0 ? Off with { Parallel = parallel } : new ToolsRequest(tools, names, parallel);
    }

    /// <summary>tool_choice {"type": "function", "function": {"name": NAME}}: NAME, one of the tools.</summary>
    private static string Named(JsonElement choice, IReadOnlySet<string> names)
    {
        if (!choice.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function"
            || !choice.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object
            || !f.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String
            || choice.EnumerateObject().Any(p => p.Name is not ("type" or "function")) || f.EnumerateObject().Any(p => p.Name != "name"))
            throw ApiException.BadRequest("a named 'tool_choice' must be {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice");
        return names.Contains(n.GetString()!) ? n.GetString()! : throw ApiException.BadRequest($"'tool_choice' names '{n.GetString()}', which is not one of 'tools'", "tool_choice");
    }

    private static HashSet<string> FunctionNames(JsonElement tools)
    {
        if (tools.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest("'tools' must be a list of tools", "tools");
        if (tools.GetArrayLength() > MaxTools) throw ApiException.BadRequest($"'tools' holds more than {MaxTools} tools", "tools");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var tool in tools.EnumerateArray())
        {
            if (tool.ValueKind != JsonValueKind.Object
                || !tool.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function"
                || !tool.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest("each tool must be {\"type\": \"function\", \"function\": {...}}", "tools");
            if (!f.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !FunctionName().IsMatch(name.GetString()!))
                throw ApiException.BadRequest("a function's 'name' must be 1 to 64 letters, digits, underscores or dashes", "tools");
            if (f.TryGetProperty("description", out var d) && d.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                throw ApiException.BadRequest("a function's 'description' must be a string", "tools");
            if (f.TryGetProperty("parameters", out var p) && p.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
                throw ApiException.BadRequest("a function's 'parameters' must be a JSON Schema object", "tools");
            if (!names.Add(name.GetString()!)) throw ApiException.BadRequest($"two tools are named '{name.GetString()}'", "tools");
        }
        return names;
    }

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex FunctionName();
}
