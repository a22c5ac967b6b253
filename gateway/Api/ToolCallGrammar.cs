using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Sampling.Grammar;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// The output of tool_choice "required" or a named function: DeepSeek's tool-call section and nothing else,
/// "&lt;｜tool▁calls▁begin｜&gt;", one or more calls (one when parallel_tool_calls is false or a function is named),
/// "&lt;｜tool▁calls▁end｜&gt;". Each call is in DeepSeek-V3/R1's form (function, the name, the arguments in a ```json
/// fence) or DeepSeek-V3.1's (the name, the arguments), as <see cref="ToolCallParser"/> reads them, with arguments
/// that satisfy the function's parameter schema (any JSON object where the function gives none). Grammars are kept
/// by the tools' text, so that a request repeating another's tools reuses its token masks.
/// </summary>
public static class ToolCallGrammar
{
    /// <summary>The most calls one output may hold.</summary>
    public const int MaxCalls = 16;

    private const int MaxCached = 64;
    private const int MaxCachedText = 64 * 1024;
    private static readonly ClearingCache<SchemaGrammar> Cache = new(MaxCached);

    /// <exception cref="ApiException">A function's parameter schema cannot be compiled, or does not describe an object.</exception>
    public static SchemaGrammar Build(JsonElement tools, string? only, bool parallel)
    {
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{only}\n{parallel}\n{tools.GetRawText()}")));
        if (Cache.TryGet(key, out var grammar)) return grammar;
        var calls = new List<GrammarNode>();
        foreach (var tool in tools.EnumerateArray())
        {
            var f = tool.GetProperty("function");
            var name = f.GetProperty("name").GetString()!;
            if (only is not null && name != only) continue;
            var args = Arguments(name, f);
            calls.Add(new SequenceNode(new LiteralNode($"{ToolCallParser.CallBegin}function{ToolCallParser.Separator}{name}\n```json\n"), args,
                new LiteralNode($"\n```{ToolCallParser.CallEnd}")));
            calls.Add(new SequenceNode(new LiteralNode($"{ToolCallParser.CallBegin}{name}{ToolCallParser.Separator}"), args, new LiteralNode(ToolCallParser.CallEnd)));
        }
        var call = new AnyOfNode([.. calls]);
        // Calls after the first may start on a new line, as DeepSeek's templates write them.
        var next = new AnyOfNode(call, new SequenceNode(new LiteralNode("\n"), call));
        GrammarNode body = parallel && only is null ? new SequenceNode(call, new RepeatNode(next, 0, MaxCalls - 1)) : call;
        grammar = new SchemaGrammar(new SequenceNode(new LiteralNode(ToolCallParser.CallsBegin), body, new LiteralNode(ToolCallParser.CallsEnd)));
        // Only tools of a modest size are kept, so that the cache's memory stays small.
        return tools.GetRawText().Length > MaxCachedText ? grammar : Cache.Add(key, grammar);
    }

    private static GrammarNode Arguments(string name, JsonElement function)
    {
        if (!function.TryGetProperty("parameters", out var p) || p.ValueKind == JsonValueKind.Null) return AnyValueNode.Object;
        GrammarNode args;
        try
        {
            args = JsonSchemaCompiler.Compile(p);
        }
        catch (SchemaGrammarException e)
        {
            throw new ApiException(400, $"function '{name}': its parameters cannot constrain the call: {e.Message}", "tools", code: "unsupported_parameter");
        }
        // "parameters": {} (some clients send it) takes any object.
        return args switch
        {
            ObjectNode => args,
            AnyValueNode => AnyValueNode.Object,
            _ => throw ApiException.BadRequest($"function '{name}': 'parameters' must describe an object", "tools"),
        };
    }
}
