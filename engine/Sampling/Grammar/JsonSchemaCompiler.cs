using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>A JSON schema that cannot be turned into a grammar: the message names the keyword and where it is.</summary>
public sealed class SchemaGrammarException(string message) : ArgumentException(message);

/// <summary>
/// Compiles a JSON schema to a <see cref="GrammarNode"/> tree. Supported: type (one or a list), properties,
/// required, additionalProperties (false, true or a schema; absent means false where properties are declared, as
/// OpenAI's strict mode and xgrammar have it, and any keys otherwise), items, minItems, maxItems, enum, const,
/// anyOf, pattern (the subset <see cref="Grammar.Pattern"/> takes), and $ref to $defs or definitions (not recursive); annotations (title, description, default, examples,
/// $schema, $id, $comment, deprecated, readOnly, writeOnly) are ignored. Any other keyword is refused by name, so
/// that no constraint is silently dropped. Compiled schemas are kept by their text, so that a schema sent again
/// reuses its token masks.
/// </summary>
public static class JsonSchemaCompiler
{
    public const int MaxNodes = 2048;
    public const int MaxNesting = 16;
    public const int MaxAnyOf = 64;
    public const int MaxEnumValues = 256;
    /// <summary>The most parse stacks a schema can keep alive at once (anyOf options, nested ones multiplying).</summary>
    public const int MaxAlternatives = 256;
    /// <summary>Bytes of enum and const values in one schema.</summary>
    public const int MaxEnumBytes = 256 * 1024;
    /// <summary>Automaton states of all of a schema's patterns.</summary>
    public const int MaxPatternStates = 16384;
    /// <summary>How deep anyOf and $ref may nest.</summary>
    public const int MaxIndirection = 32;
    private const int MaxCached = 256;
    /// <summary>Schemas up to this size are kept compiled (the cache holds at most <see cref="MaxCached"/> of them).</summary>
    private const int MaxCachedText = 64 * 1024;

    private static readonly HashSet<string> Annotations = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"];
    private static readonly HashSet<string> Keywords = ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "anyOf", "$ref", "pattern"];
    private static readonly JsonWriterOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly ClearingCache<GrammarNode> Cache = new(MaxCached);

    /// <summary>The grammar of <paramref name="schema"/>, compiled once per distinct schema text.</summary>
    /// <exception cref="SchemaGrammarException">A keyword or form this compiler does not support, or a schema no value can satisfy.</exception>
    public static GrammarNode Compile(JsonElement schema)
    {
        var text = schema.GetRawText();
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
        if (Cache.TryGet(key, out var node)) return node;
        node = new Compilation(schema).Node(schema, "#", 0);
        if (Alternatives(node, []) > MaxAlternatives)
            throw new SchemaGrammarException($"the schema's anyOf options (nested ones multiplied) would follow more than {MaxAlternatives} alternatives at once");
        return text.Length > MaxCachedText ? node : Cache.Add(key, node);
    }

    /// <summary>The most alternatives a node can keep alive at once: an anyOf's options' sum, a container's largest part.</summary>
    private static long Alternatives(GrammarNode node, Dictionary<GrammarNode, long> known)
    {
        if (known.TryGetValue(node, out var n)) return n;
        n = node switch
        {
            AnyOfNode a => a.Options.Sum(o => Alternatives(o, known)),
            ObjectNode o => o.Values.Append(o.Additional ?? AnyValueNode.Instance).Max(v => Alternatives(v, known)),
            ArrayNode a => Alternatives(a.Items, known),
            _ => 1,
        };
        return known[node] = Math.Min(n, MaxAlternatives + 1L);
    }

    private sealed class Compilation(JsonElement root)
    {
        private readonly HashSet<string> _resolving = new(StringComparer.Ordinal);
        // A $ref target is compiled once and shared by every use.
        private readonly Dictionary<string, GrammarNode> _resolved = new(StringComparer.Ordinal);
        private readonly Dictionary<string, PatternNode> _patterns = new(StringComparer.Ordinal);
        private int _nodes, _indirection, _enumBytes, _patternStates;

        public GrammarNode Node(JsonElement s, string at, int nesting)
        {
            if (++_nodes > MaxNodes) throw new SchemaGrammarException($"the schema has more than {MaxNodes} subschemas");
            if (s.ValueKind == JsonValueKind.True) return AnyValueNode.Instance;
            if (s.ValueKind == JsonValueKind.False) throw new SchemaGrammarException($"the schema at {at} is false: no value satisfies it");
            if (s.ValueKind != JsonValueKind.Object) throw new SchemaGrammarException($"the schema at {at} must be an object or a boolean");
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in s.EnumerateObject())
            {
                if (!Keywords.Contains(p.Name) && !Annotations.Contains(p.Name))
                    throw new SchemaGrammarException($"JSON schema keyword '{p.Name}' (at {at}) is not supported by this server; supported: {string.Join(", ", Keywords)}");
                if (!names.Add(p.Name)) throw new SchemaGrammarException($"keyword '{p.Name}' appears twice (at {at})");
            }
            // A subschema's $id would change what its $refs resolve against.
            if (at != "#" && names.Contains("$id")) throw new SchemaGrammarException($"'$id' (at {at}) is supported only at the root");
            if (s.TryGetProperty("$ref", out var reference))
            {
                if (s.EnumerateObject().Any(p => Keywords.Contains(p.Name) && p.Name != "$ref"))
                    throw new SchemaGrammarException($"'$ref' (at {at}) beside other keywords is not supported");
                return Indirect(() => Ref(reference, at, nesting), at);
            }
            if (s.TryGetProperty("anyOf", out var anyOf))
            {
                if (s.EnumerateObject().Any(p => Keywords.Contains(p.Name) && p.Name != "anyOf"))
                    throw new SchemaGrammarException($"'anyOf' (at {at}) beside other keywords is not supported: put them in each option");
                if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() is 0 or > MaxAnyOf)
                    throw new SchemaGrammarException($"'anyOf' (at {at}) must be a list of 1 to {MaxAnyOf} schemas");
                return Indirect(() => new AnyOfNode(anyOf.EnumerateArray().Select((o, i) => Node(o, $"{at}/anyOf/{i}", nesting)).ToArray()), at);
            }
            var types = Types(s, at);
            if (s.TryGetProperty("enum", out var e) || s.TryGetProperty("const", out e))
            {
                var values = Enum(s, e, types, at);
                if ((_enumBytes += values.Values.Sum(v => v.Length)) > MaxEnumBytes) throw new SchemaGrammarException($"the schema's enum and const values exceed {MaxEnumBytes} bytes");
                return values;
            }
            if (types.Length == 0) return AnyValueNode.Instance;
            CheckApplies(s, types, at);
            var options = types.Select(t => Typed(s, t, at, nesting)).ToArray();
            return options.Length == 1 ? options[0] : new AnyOfNode(options);
        }

        private GrammarNode Indirect(Func<GrammarNode> compile, string at)
        {
            if (++_indirection > MaxIndirection) throw new SchemaGrammarException($"anyOf and $ref nest more than {MaxIndirection} deep (at {at})");
            try { return compile(); }
            finally { _indirection--; }
        }

        private GrammarNode Ref(JsonElement reference, string at, int nesting)
        {
            var path = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : "";
            if (_resolved.TryGetValue(path, out var known)) return known;
            if (path.Contains('~') || path.Contains('%')) throw new SchemaGrammarException($"'$ref' \"{path}\" (at {at}): escaped names are not supported");
            string? name = path.StartsWith("#/$defs/", StringComparison.Ordinal) ? path["#/$defs/".Length..]
                : path.StartsWith("#/definitions/", StringComparison.Ordinal) ? path["#/definitions/".Length..] : null;
            var container = path.StartsWith("#/$defs/", StringComparison.Ordinal) ? "$defs" : "definitions";
            if (name is null || name.Contains('/') || !root.TryGetProperty(container, out var defs) || defs.ValueKind != JsonValueKind.Object || !defs.TryGetProperty(name, out var target))
                throw new SchemaGrammarException($"'$ref' (at {at}) must name an entry of the root's $defs or definitions, as \"#/$defs/NAME\"");
            if (!_resolving.Add(path)) throw new SchemaGrammarException($"'$ref' \"{path}\" (at {at}) is recursive, which is not supported");
            try { return _resolved[path] = Node(target, path, nesting); }
            finally { _resolving.Remove(path); }
        }

        private static string[] Types(JsonElement s, string at)
        {
            string[] all = ["object", "array", "string", "number", "integer", "boolean", "null"];
            if (!s.TryGetProperty("type", out var t))
            {
                // Without a type, the keywords present say which (properties: an object), or any value.
                if (s.TryGetProperty("properties", out _) || s.TryGetProperty("required", out _) || s.TryGetProperty("additionalProperties", out _)) return ["object"];
                if (s.TryGetProperty("items", out _) || s.TryGetProperty("minItems", out _) || s.TryGetProperty("maxItems", out _)) return ["array"];
                // A pattern constrains strings only: any other type passes it, as JSON Schema has it.
                if (s.TryGetProperty("pattern", out _)) return ["object", "array", "string", "number", "boolean", "null"];
                return [];
            }
            var list = t.ValueKind == JsonValueKind.Array ? t.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : "").ToArray()
                : t.ValueKind == JsonValueKind.String ? [t.GetString()!] : [""];
            if (list.Length == 0 || list.Any(x => !all.Contains(x)) || list.Distinct().Count() != list.Length)
                throw new SchemaGrammarException($"'type' (at {at}) must be one of {string.Join(", ", all)} or a list of them");
            return list;
        }

        private GrammarNode Typed(JsonElement s, string type, string at, int nesting) => type switch
        {
            "object" => Object(s, at, nesting),
            "array" => Array(s, at, nesting),
            "string" => s.TryGetProperty("pattern", out var pattern) ? Pattern(pattern, at) : StringNode.Instance,
            "number" => NumberNode.Any,
            "integer" => NumberNode.Integer,
            "boolean" => ConstNode.Boolean,
            _ => ConstNode.Null,
        };

        /// <summary>Object and array keywords need their type among the schema's: where it is not, they would silently constrain nothing.</summary>
        private static void CheckApplies(JsonElement s, string[] types, string at)
        {
            foreach (var p in s.EnumerateObject())
            {
                var applies = p.Name switch
                {
                    "properties" or "required" or "additionalProperties" => "object",
                    "items" or "minItems" or "maxItems" => "array",
                    "pattern" => "string",
                    _ => null,
                };
                if (applies is not null && !types.Contains(applies))
                    throw new SchemaGrammarException($"'{p.Name}' (at {at}) applies to type '{applies}', which the schema's type does not include");
            }
        }

        /// <summary>A pattern, compiled once per schema however often it appears, within a budget of automaton states per schema.</summary>
        private PatternNode Pattern(JsonElement pattern, string at)
        {
            if (pattern.ValueKind != JsonValueKind.String) throw new SchemaGrammarException($"'pattern' (at {at}) must be a string");
            var text = pattern.GetString()!;
            if (_patterns.TryGetValue(text, out var known)) return known;
            Grammar.Pattern compiled;
            try { compiled = new Grammar.Pattern(text); }
            catch (ArgumentException e) { throw new SchemaGrammarException($"'pattern' (at {at}): {e.Message}"); }
            if ((_patternStates += compiled.States) > MaxPatternStates)
                throw new SchemaGrammarException($"the schema's patterns need more than {MaxPatternStates} automaton states in all");
            return _patterns[text] = new PatternNode(compiled);
        }

        private GrammarNode Object(JsonElement s, string at, int nesting)
        {
            if (nesting >= MaxNesting) throw new SchemaGrammarException($"the schema nests objects and arrays more than {MaxNesting} deep (at {at})");
            var properties = new List<(string, GrammarNode)>();
            if (s.TryGetProperty("properties", out var ps))
            {
                if (ps.ValueKind != JsonValueKind.Object) throw new SchemaGrammarException($"'properties' (at {at}) must be an object");
                foreach (var p in ps.EnumerateObject()) properties.Add((p.Name, Node(p.Value, $"{at}/properties/{p.Name}", nesting + 1)));
            }
            var required = new List<string>();
            if (s.TryGetProperty("required", out var r))
            {
                if (r.ValueKind != JsonValueKind.Array || r.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
                    throw new SchemaGrammarException($"'required' (at {at}) must be a list of property names");
                required.AddRange(r.EnumerateArray().Select(x => x.GetString()!));
            }
            GrammarNode? additional = properties.Count == 0 ? AnyValueNode.Instance : null;
            if (s.TryGetProperty("additionalProperties", out var a))
                additional = a.ValueKind switch
                {
                    JsonValueKind.False => null,
                    JsonValueKind.True => AnyValueNode.Instance,
                    _ => Node(a, $"{at}/additionalProperties", nesting + 1),
                };
            try { return new ObjectNode(properties, required, additional); }
            catch (ArgumentException ex) when (ex is not SchemaGrammarException) { throw new SchemaGrammarException($"the object at {at}: {ex.Message}"); }
        }

        private GrammarNode Array(JsonElement s, string at, int nesting)
        {
            if (nesting >= MaxNesting) throw new SchemaGrammarException($"the schema nests objects and arrays more than {MaxNesting} deep (at {at})");
            var items = s.TryGetProperty("items", out var i) ? Node(i, $"{at}/items", nesting + 1) : AnyValueNode.Instance;
            var min = Count(s, "minItems", at) ?? 0;
            var max = Count(s, "maxItems", at) ?? int.MaxValue;
            if (min > max) throw new SchemaGrammarException($"minItems is above maxItems (at {at})");
            return new ArrayNode(items, min, max);
        }

        private static int? Count(JsonElement s, string keyword, string at)
        {
            if (!s.TryGetProperty(keyword, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var n) || n < 0)
                throw new SchemaGrammarException($"'{keyword}' (at {at}) must be a non-negative integer");
            return n;
        }

        /// <summary>enum or const: the values that also have one of the types given, each written compactly.</summary>
        private static ConstNode Enum(JsonElement s, JsonElement e, string[] types, string at)
        {
            if (s.TryGetProperty("enum", out _) && s.TryGetProperty("const", out _)) throw new SchemaGrammarException($"'enum' beside 'const' (at {at}) is not supported");
            var values = s.TryGetProperty("enum", out _) ? (e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().ToArray() : throw new SchemaGrammarException($"'enum' (at {at}) must be a list"))
                : [e];
            if (values.Length > MaxEnumValues) throw new SchemaGrammarException($"'enum' (at {at}) has more than {MaxEnumValues} values");
            if (s.EnumerateObject().Any(p => Keywords.Contains(p.Name) && p.Name is not ("type" or "enum" or "const")))
                throw new SchemaGrammarException($"'enum' or 'const' (at {at}) beside keywords other than 'type' is not supported");
            var kept = values.Where(v => types.Length == 0 || types.Any(t => HasType(v, t))).Select(Write).ToArray();
            if (kept.Length == 0) throw new SchemaGrammarException($"no value of 'enum' or 'const' (at {at}) has the schema's type");
            return new ConstNode(kept);
        }

        private static bool HasType(JsonElement v, string type) => (type, v.ValueKind) switch
        {
            ("object", JsonValueKind.Object) or ("array", JsonValueKind.Array) or ("string", JsonValueKind.String) or ("number", JsonValueKind.Number)
                or ("boolean", JsonValueKind.True or JsonValueKind.False) or ("null", JsonValueKind.Null) => true,
            ("integer", JsonValueKind.Number) => v.TryGetDecimal(out var d) && decimal.Truncate(d) == d,
            _ => false,
        };

        private static string Write(JsonElement v)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer, Compact)) v.WriteTo(w);
            return Encoding.UTF8.GetString(buffer.ToArray());
        }
    }
}
