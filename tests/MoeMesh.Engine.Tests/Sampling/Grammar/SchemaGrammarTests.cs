using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Sampling.Grammar;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Tests.Sampling.Grammar;

/// <summary>
/// JSON schemas compiled to grammars, checked against an independent validator (JsonSchema.Net): what the grammar
/// completes validates, what violates the schema is refused, and no reachable state is a dead end.
/// </summary>
public sealed class SchemaGrammarTests
{
    public static readonly Dictionary<string, string> Schemas = new()
    {
        ["person"] = """
            {"type": "object", "additionalProperties": false, "required": ["name", "age"],
             "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"},
                            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}}
            """,
        ["mixed"] = """
            {"type": "object", "required": ["kind", "pos", "v", "flag"],
             "properties": {"kind": {"enum": ["a", "b", 1, 10, null, {"x": [1, "é"]}]},
                            "pos": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]},
                            "v": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2}]},
                            "flag": {"type": ["boolean", "null"]}}}
            """,
        ["additional"] = """
            {"type": "object", "properties": {"id": {"const": "x"}}, "additionalProperties": {"type": "integer"}}
            """,
        ["free"] = """
            {"type": "object", "properties": {"data": {}, "meta": {"type": "object"}}, "required": ["data", "meta"]}
            """,
        ["defs"] = """
            {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"}, "label": {"type": "string"}}, "required": ["x"], "additionalProperties": false}},
             "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 2}},
             "required": ["a", "b"], "additionalProperties": false}
            """,
        ["array"] = """
            {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "boolean"}, "n": {"enum": [1, 10, 100]}}, "required": ["k", "n"]}, "minItems": 1, "maxItems": 3}
            """,
        ["prefixes"] = """
            {"type": "object", "properties": {"s": {"enum": ["x", "xy", "xyz"]}, "name": {"type": "integer"}, "names": {"type": "integer"}, "n": {"type": "number"}},
             "required": ["s", "name", "names"]}
            """,
        ["patterns"] = """
            {"type": "object", "required": ["zip", "code", "pet", "short"], "additionalProperties": false,
             "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}(-[0-9]{4})?$"}, "code": {"type": "string", "pattern": "^[A-Z]{2}\\d+$"},
                            "pet": {"type": "string", "pattern": "^(cat|dog)s?$"}, "short": {"type": "string", "pattern": "^.{2,4}$"},
                            "note": {"type": ["string", "null"], "pattern": "^[^0-9]*$"}, "id": {"pattern": "^[0-9]+$"}}}
            """,
    };

    public static TheoryData<string> SchemaNames => new(Schemas.Keys);

    private static readonly Lazy<HfTokenizer> Demo = new(() =>
    {
        var dir = DemoModel.EnsureCached(Path.Combine(Path.GetTempPath(), "moemesh-engine-tests"), DemoShape.Tiny, seed: 1);
        return HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
    });

    private static readonly Lazy<TokenMasks> DemoMasks = new(() => new TokenMasks(Demo.Value, Demo.Value.VocabularySize));

    private static SchemaGrammar Grammar(string schema) => new(JsonSchemaCompiler.Compile(JsonDocument.Parse(schema).RootElement));

    private static bool Validates(string schema, byte[] json, out string why)
    {
        using var doc = JsonDocument.Parse(json);
        var result = JsonSchema.FromText(schema).Evaluate(doc.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        why = string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")));
        return result.IsValid;
    }

    private static GrammarState? Run(string schema, string text) => TokenMasks.Advance(Grammar(schema).Start(), Encoding.UTF8.GetBytes(text));

    /// <summary>
    /// Seeded random walks over the demo vocabulary, each step a random token of the mask: the mask is never empty
    /// before the output is complete, and every completed output validates against the schema.
    /// </summary>
    [Theory]
    [MemberData(nameof(SchemaNames))]
    public void RandomTokenWalks_NeverDeadEnd_AndValidate(string name)
    {
        var schema = Schemas[name];
        var tokenizer = Demo.Value;
        var masks = DemoMasks.Value;
        var grammar = Grammar(schema);
        var random = new Random(name.Length * 31 + 5);
        var completed = 0;
        for (var walk = 0; walk < 40; walk++)
        {
            var state = grammar.Start();
            var text = new List<byte>();
            for (var step = 0; step < 600 && !state.IsComplete; step++)
            {
                var mask = masks.Allowed(state);
                var allowed = Enumerable.Range(0, tokenizer.VocabularySize).Where(id => TokenMasks.IsAllowed(mask, id)).ToList();
                Assert.True(allowed.Count > 0, $"dead end after '{Encoding.UTF8.GetString(text.ToArray())}'");
                // Lean towards closing so that walks finish: a token holding a closer or quote half the time, more later on.
                var closers = allowed.Where(id => tokenizer.TokenBytes(id).IndexOfAny("}]\""u8) >= 0).ToList();
                var token = closers.Count > 0 && random.Next(100) < 50 + step / 4 ? closers[random.Next(closers.Count)] : allowed[random.Next(allowed.Count)];
                text.AddRange(tokenizer.TokenBytes(token).ToArray());
                state = TokenMasks.Advance(state, tokenizer.TokenBytes(token))!;
                Assert.NotNull(state);
            }
            if (!state.IsComplete) continue;
            completed++;
            Assert.True(Validates(schema, text.ToArray(), out var why), $"{Encoding.UTF8.GetString(text.ToArray())}: {why}");
        }
        Assert.True(completed >= 30, $"only {completed} of 40 walks completed");
    }

    [Theory]
    [InlineData("person", """{"name": "Ann", "age": 31}""")]
    [InlineData("person", """{ "tags" : ["a", "b"], "age": -4, "name": "", "email": "a@b" }""")]
    [InlineData("mixed", """{"kind": 10, "pos": {"x": 1.5e3, "y": -0}, "v": [7], "flag": null}""")]
    [InlineData("mixed", """{"kind": {"x":[1,"é"]}, "pos": {"y": 2, "x": 0.25}, "v": "text", "flag": true}""")]
    [InlineData("mixed", """{"kind": null, "pos": {"x": 1, "y": 2}, "v": [1, 2], "flag": false}""")]
    [InlineData("additional", """{"other": 5, "id": "x", "more": -12}""")]
    [InlineData("additional", """{}""")]
    [InlineData("free", """{"data": [1, {"a": null}, "s"], "meta": {"any": {"deep": [true]}}}""")]
    [InlineData("defs", """{"a": {"x": 1}, "b": [{"x": 2, "label": "p"}, {"x": 3}]}""")]
    [InlineData("array", """[{"k": true, "n": 100}, {"n": 1, "k": false}]""")]
    [InlineData("prefixes", """{"names": 2, "s": "xy", "name": 1}""")]
    [InlineData("prefixes", """{"name": 1, "names": 2, "s": "x", "n": 1}""")]
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "cats", "short": "xy"}""")]
    [InlineData("patterns", """{"zip": "12345-6789", "code": "\u0041B12", "pet": "dog", "short": "é中\"x", "note": "no digits"}""")]
    [InlineData("patterns", """{"zip": "00000", "code": "ZZ0", "pet": "cat", "short": "\t\t", "note": null}""")]
    [InlineData("patterns", """{"zip": "00000", "code": "ZZ0", "pet": "cat", "short": "ab", "id": "007"}""")]
    [InlineData("patterns", """{"zip": "00000", "code": "ZZ0", "pet": "cat", "short": "ab", "id": [1, {"x": "y"}]}""")]
    public void ValidDocuments_AreAcceptedAndComplete(string name, string json)
    {
        Assert.True(Run(Schemas[name], json) is { IsComplete: true }, json);
        Assert.True(Validates(Schemas[name], Encoding.UTF8.GetBytes(json), out var why), why);
    }

    [Theory]
    [InlineData("person", """{"name": "Ann"}""")]                           // a required property missing
    [InlineData("person", """{"name": "Ann", "age": 3, "x": 1}""")]         // additional property
    [InlineData("person", """{"name": "Ann", "age": 3.5}""")]               // not an integer
    [InlineData("person", """{"name": "Ann", "age": 3, "age": 4}""")]       // a repeated key
    [InlineData("person", """{"name": "Ann", "age": 3, "tags": ["a", "b", "c", "d"]}""")] // too many items
    [InlineData("person", """{"na\u006de": "Ann", "age": 3}""")]            // a declared key spelled with an escape
    [InlineData("mixed", """{"kind": "c", "pos": {"x": 1, "y": 2}, "v": "t", "flag": null}""")] // not in the enum
    [InlineData("mixed", """{"kind": 100, "pos": {"x": 1, "y": 2}, "v": "t", "flag": null}""")]
    [InlineData("mixed", """{"kind": "a", "pos": {"x": 1, "y": 2}, "v": [], "flag": null}""")]   // too few items
    [InlineData("mixed", """{"kind": "a", "pos": {"x": 1, "y": 2}, "v": 3, "flag": null}""")]    // none of anyOf
    [InlineData("additional", """{"id": "x", "other": "s"}""")]             // additional value of the wrong type
    [InlineData("additional", """{"id": "x", "id": "x"}""")]
    [InlineData("defs", """{"a": {"x": 1, "y": 2}, "b": [{"x": 2}, {"x": 3}]}""")]
    [InlineData("defs", """{"a": {"x": 1}, "b": [{"x": 2}]}""")]
    [InlineData("array", """[]""")]
    [InlineData("array", """[{"k": true, "n": 1}, {"k": true, "n": 1}, {"k": true, "n": 1}, {"k": true, "n": 1}]""")]
    [InlineData("prefixes", """{"s": "xyzz", "name": 1, "names": 2}""")]
    [InlineData("prefixes", """{"s": "x", "nam": 1, "names": 2}""")]
    [InlineData("person", """ {"name": "Ann", "age": 3}""")]             // whitespace before the root (valid JSON, but padding)
    [InlineData("patterns", """{"zip": "1234", "code": "AB7", "pet": "cats", "short": "xy"}""")]
    [InlineData("patterns", """{"zip": "12345", "code": "A7", "pet": "cats", "short": "xy"}""")]
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "catss", "short": "xy"}""")]
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "cats", "short": "x"}""")]
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "cats", "short": "x\ny"}""")]  // '.' is no line terminator
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "cats", "short": "x😀"}""")]    // past U+FFFF: two units
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "cats", "short": "xy", "note": "a1"}""")]
    [InlineData("patterns", """{"zip": "12345", "code": "AB7", "pet": "cats", "short": "xy", "id": "abc"}""")]
    public void SchemaViolations_AreRefused(string name, string text)
    {
        Assert.False(Run(Schemas[name], text) is { IsComplete: true }, text);
    }

    /// <summary>
    /// Valid documents changed one byte at a time: whatever the grammar still accepts as complete, the validator
    /// accepts too. The grammar never lets an invalid document through.
    /// </summary>
    [Theory]
    [MemberData(nameof(SchemaNames))]
    public void MutatedDocuments_TheGrammarCompletes_Validate(string name)
    {
        var schema = Schemas[name];
        var grammar = Grammar(schema);
        var random = new Random(name.Length);
        var valid = new List<byte[]>();
        // Valid documents of this schema, from random byte walks through the grammar itself.
        for (var attempt = 0; attempt < 300 && valid.Count < 30; attempt++)
        {
            var state = grammar.Start();
            var text = new List<byte>();
            while (!state.IsComplete && text.Count < 2000)
            {
                var options = Enumerable.Range(0, 256).Select(b => (byte)b).Where(b => state.Advance(b) is not null).ToList();
                Assert.NotEmpty(options);
                var closers = options.Where(b => b is (byte)'}' or (byte)']' or (byte)'"').ToList();
                var b = closers.Count > 0 && random.Next(100) < 40 + text.Count / 4 ? closers[random.Next(closers.Count)] : options[random.Next(options.Count)];
                text.Add(b);
                state = state.Advance(b)!;
            }
            if (state.IsComplete) valid.Add(text.ToArray());
        }
        Assert.True(valid.Count == 30, $"only {valid.Count} of 300 walks completed");
        var accepted = 0;
        foreach (var doc in valid)
        {
            Assert.True(Validates(schema, doc, out var why), $"{Encoding.UTF8.GetString(doc)}: {why}");
            for (var m = 0; m < 40; m++)
            {
                var mutated = (byte[])doc.Clone();
                mutated[random.Next(mutated.Length)] = (byte)"{}[]\",:0123456789.eE+-tfnulxyabk \\"[random.Next(34)];
                if (TokenMasks.Advance(grammar.Start(), mutated) is not { IsComplete: true }) continue;
                accepted++;
                Assert.True(Validates(schema, mutated, out var why2), $"{Encoding.UTF8.GetString(mutated)}: {why2}");
            }
        }
        Assert.True(accepted >= 15, $"only {accepted} mutations were accepted: the check saw too few");
    }

    /// <summary>On DeepSeek-V3's 129k vocabulary, a schema grammar's masks equal running it over every token's bytes.</summary>
    [Fact]
    public void Mask_IsExactlyTheTokensTheGrammarAccepts_OnDeepSeekV3sVocabulary()
    {
        var tokenizer = HfTokenizer.Load(TokenizerOracle.DeepSeekV3Tokenizer);
        var masks = new TokenMasks(tokenizer, tokenizer.VocabularySize);
        var grammar = Grammar(Schemas["mixed"]);
        foreach (var prefix in new[] { "", "{", "{\"", "{\"po", "{\"pos\":{\"x\":1", "{\"kind\":1", "{\"kind\":{\"x\":[1,\"", "{\"v\":\"ab", "{\"v\":[", "{\"flag\":", "{\"flag\":nu" })
            TokenMasksTests.AssertExact(masks, tokenizer, TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes(prefix)), prefix);
    }

    [Theory]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}}""", "minimum")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "format": "date-time"}}}""", "format")]
    [InlineData("""{"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}}""", "oneOf")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}""", "maxLength")]
    [InlineData("""{"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}""", "recursive")]
    [InlineData("""{"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}""", "$defs")]
    [InlineData("""{"type": "object", "properties": {"a": {"enum": []}}}""", "enum")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "enum": [1, 2]}}}""", "type")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}""", "'b'")]
    [InlineData("""{"type": "object", "properties": {"a\"b": {"type": "string"}}}""", "quote")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}}""", "minItems")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "strin"}}}""", "type")]
    [InlineData("""{"type": "string", "properties": {"a": {"type": "string"}}}""", "properties")]
    [InlineData("""{"type": "object", "properties": {"a": false}}""", "false")]
    [InlineData("""{"type": "object", "type": "string"}""", "twice")]
    [InlineData("""{"type": "object", "$defs": {"t": {"type": "string"}}, "properties": {"p": {"$id": "https://x/inner", "$defs": {"t": {"type": "integer"}}, "$ref": "#/$defs/t"}}}""", "$id")]
    [InlineData("""{"type": "object", "$defs": {"a/b": {"type": "string"}}, "properties": {"p": {"$ref": "#/$defs/a~1b"}}}""", "escaped")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}""", "backreference")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "a(?=b)"}}}""", "lookaround")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "\\bword"}}}""", "word boundary")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "\\D+"}}}""", "\\D")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "a^b"}}}""", "anchor")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "^a|b$"}}}""", "group")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "a{2000}"}}}""", "256")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "(ab"}}}""", "unclosed")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "integer", "pattern": "1"}}}""", "pattern")]
    [InlineData("""{"type": "object", "properties": {"a": {"pattern": 5}}}""", "pattern")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<a-b>x)"}}}""", "group name")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "a{2147483648}"}}}""", "256")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "\\_"}}}""", "escape")]
    public void UnsupportedOrUnsatisfiableSchemas_AreRefusedByName(string schema, string named)
    {
        var ex = Assert.Throws<SchemaGrammarException>(() => JsonSchemaCompiler.Compile(JsonDocument.Parse(schema).RootElement));
        Assert.Contains(named, ex.Message);
    }

    /// <summary>Bounds on what a schema can cost: alternatives alive at once, anyOf/$ref indirection, enum bytes; a $ref compiles once.</summary>
    [Fact]
    public void CostlySchemas_AreRefused_AndRefsShared()
    {
        static string AnyOf(int n, string option) => "{\"anyOf\": [" + string.Join(", ", Enumerable.Repeat(option, n)) + "]}";
        static string Compile(string schema) => Assert.Throws<SchemaGrammarException>(() => JsonSchemaCompiler.Compile(JsonDocument.Parse(schema).RootElement)).Message;
        static string Object(string properties) => "{\"type\": \"object\", \"properties\": {" + properties + "}}";
        Assert.Contains("alternatives", Compile(Object("\"a\": " + AnyOf(20, AnyOf(20, "{\"type\": \"object\"}")))));
        var chain = string.Join(", ", Enumerable.Range(0, 40).Select(i => $"\"d{i}\": " + AnyOf(1, $"{{\"$ref\": \"#/$defs/d{i + 1}\"}}"))) + ", \"d40\": {\"type\": \"string\"}";
        Assert.Contains("nest", Compile("{\"$defs\": {" + chain + "}, \"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"#/$defs/d0\"}}}"));
        static string Enum(int n) => "{\"enum\": [" + string.Join(", ", Enumerable.Range(0, n).Select(i => $"\"{i}{new string('x', 1100)}\"")) + "]}";
        Assert.Contains("bytes", Compile(Object("\"a\": " + Enum(256))));
        // One enum of 141 KB referenced 60 times is compiled, and counted, once.
        var uses = string.Join(", ", Enumerable.Range(0, 60).Select(i => $"\"p{i}\": {{\"$ref\": \"#/$defs/e\"}}"));
        var shared = "{\"$defs\": {\"e\": " + Enum(128) + "}, \"type\": \"object\", \"properties\": {" + uses + "}}";
        Assert.IsType<ObjectNode>(JsonSchemaCompiler.Compile(JsonDocument.Parse(shared).RootElement));
    }

    [Fact]
    public void RootsWhoseEndIsNeverKnown_AreRefused()
    {
        Assert.Throws<ArgumentException>(() => Grammar("""{"type": "integer"}"""));
        Assert.Throws<ArgumentException>(() => Grammar("""{"enum": [1, 2]}"""));
        Assert.True(Run("""{"type": "string"}""", "\"ok\"") is { IsComplete: true });
    }

    [Fact]
    public void TheSameSchemaText_CompilesOnce()
    {
        var schema = JsonDocument.Parse(Schemas["person"]).RootElement;
        Assert.Same(JsonSchemaCompiler.Compile(schema), JsonSchemaCompiler.Compile(schema));
    }
}
