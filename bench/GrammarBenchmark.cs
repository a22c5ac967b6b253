using System.Diagnostics;
using MoeMesh.Engine.Sampling.Grammar;
using MoeMesh.Engine.Text;

namespace MoeMesh.Bench;

/// <summary>
/// The cost constrained decoding adds per token, on DeepSeek-V3's 129k vocabulary and on a 32k one (its first 32,768
/// ids): the trie's build, a cold mask (a state not seen before: the trie walk), and a decoding step's mask work
/// (cached mask, the logits masked, the state advanced) over seeded walks that write JSON objects.
/// </summary>
public static class GrammarBenchmark
{
    public static void Run(string repository, int walks)
    {
        var tokenizerJson = Path.Combine(repository, "tests", "oracle", "node_modules", "@lenml", "tokenizer-deepseek_v3", "models", "tokenizer.json");
        if (!File.Exists(tokenizerJson)) throw new FileNotFoundException("run test.sh (or npm ci in tests/oracle) first", tokenizerJson);
        var tokenizer = HfTokenizer.Load(tokenizerJson);
        foreach (var vocabulary in new[] { 32_768, tokenizer.VocabularySize })
        {
            var build = Stopwatch.StartNew();
            var masks = new TokenMasks(tokenizer, vocabulary);
            var trie = masks.Trie;
            var buildMs = build.Elapsed.TotalMilliseconds;
            // Cold masks: the first state inside a string (the region's tokens and the quote trie built), then another
            // string state of a new key (only the tokens holding a quote walked), then a state outside strings.
            var cold = new List<double>();
            foreach (var prefix in new[] { "{\"a\": \"x", "{\"a\": [{\"b\": \"y", "{\"a\": [{\"b\": 1" })
            {
                var sw = Stopwatch.StartNew();
                masks.Allowed(TokenMasks.Advance(JsonObjectGrammar.Instance.Start(), System.Text.Encoding.UTF8.GetBytes(prefix))!);
                cold.Add(sw.Elapsed.TotalMilliseconds);
            }

            var (perToken, steps, computed) = Walks(masks, tokenizer, vocabulary, JsonObjectGrammar.Instance, walks);
            Console.WriteLine($"vocabulary {vocabulary}: trie of {trie.NodeCount} nodes built in {buildMs:F0} ms; cold masks: first in a string {cold[0]:F1} ms, another string state {cold[1]:F2} ms, outside strings {cold[2]:F2} ms; " +
                $"JSON object: {steps} constrained steps over {walks} walks: {perToken * 1000:F0} us a token on average ({computed} masks computed, the rest cached)");
            var schema = new SchemaGrammar(JsonSchemaCompiler.Compile(System.Text.Json.JsonDocument.Parse(Schema).RootElement));
            (perToken, steps, computed) = Walks(masks, tokenizer, vocabulary, schema, walks);
            Console.WriteLine($"vocabulary {vocabulary}: JSON schema (an order list): {steps} constrained steps over {walks} walks: {perToken * 1000:F0} us a token on average ({computed} masks computed)");
            foreach (var pattern in new[] { "^[A-Za-z0-9]{1,64}$", "^.{0,200}$", "[0-9]{3}" })
                PatternMasks(masks, tokenizer, vocabulary, pattern);
        }
    }

    /// <summary>
    /// A string under a pattern: its masks are not shared with other strings (each state of the pattern's automaton
    /// has its own), so each new state costs a walk. The time of each of the first 30 steps' masks, cold.
    /// </summary>
    private static void PatternMasks(TokenMasks masks, HfTokenizer tokenizer, int vocabulary, string pattern)
    {
        var schema = "{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\", \"pattern\": " + System.Text.Json.JsonSerializer.Serialize(pattern) + "}}, \"required\": [\"s\"]}";
        var grammar = new SchemaGrammar(JsonSchemaCompiler.Compile(System.Text.Json.JsonDocument.Parse(schema).RootElement));
        var state = TokenMasks.Advance(grammar.Start(), "{\"s\": \""u8)!;
        var random = new Random(5);
        var times = new List<double>();
        for (var step = 0; step < 30; step++)
        {
            var sw = Stopwatch.StartNew();
            var mask = masks.Allowed(state);
            times.Add(sw.Elapsed.TotalMilliseconds);
            // A random token that stays inside the string.
            var inside = Enumerable.Range(0, vocabulary).Where(id => TokenMasks.IsAllowed(mask, id) && tokenizer.TokenBytes(id).IndexOf((byte)'"') < 0).ToList();
            if (inside.Count == 0) break;
            state = TokenMasks.Advance(state, tokenizer.TokenBytes(inside[random.Next(inside.Count)]))!;
        }
        var sorted = times.Order().ToList();
        Console.WriteLine($"vocabulary {vocabulary}: a string under \"{pattern}\": {times.Count} steps, mask {sorted[sorted.Count / 2]:F2} ms median, {sorted[^1]:F1} ms at most");
    }

    /// <summary>An order list: nested objects, an array, an enum, anyOf and free strings.</summary>
    public const string Schema = """
        {"type": "object", "required": ["customer", "items"], "additionalProperties": false,
         "properties": {"customer": {"type": "object", "properties": {"name": {"type": "string"}, "vip": {"type": "boolean"}}, "required": ["name"]},
                        "items": {"type": "array", "items": {"type": "object", "required": ["sku", "qty", "size"],
                                  "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}, "size": {"enum": ["S", "M", "L"]}, "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}}}
        """;

    /// <summary>Seeded walks through <paramref name="grammar"/>: the engine's mask work per token, the steps, and the masks computed.</summary>
    private static (double PerTokenMs, int Steps, long Computed) Walks(TokenMasks masks, HfTokenizer tokenizer, int vocabulary, OutputGrammar grammar, int walks)
    {
        var random = new Random(3);
        var logits = new float[vocabulary];
        var steps = 0;
        var before = masks.Computed;
        var engineWork = new Stopwatch();
        for (var w = 0; w < walks; w++)
        {
            var state = grammar.Start();
            for (var step = 0; step < 256 && !state.IsComplete; step++, steps++)
            {
                // What the engine does per token: the mask (cached or computed), the logits masked, the state advanced.
                engineWork.Start();
                var mask = masks.Allowed(state);
                Constrain(logits, mask);
                engineWork.Stop();
                var token = Pick(mask, random, tokenizer);
                engineWork.Start();
                state = TokenMasks.Advance(state, tokenizer.TokenBytes(token))!;
                engineWork.Stop();
            }
        }
        return (engineWork.Elapsed.TotalMilliseconds / steps, steps, masks.Computed - before);
    }

    /// <summary>The engine's masking: forbidden tokens' logits to minus infinity, a word of the mask at a time.</summary>
    private static void Constrain(float[] logits, ulong[] mask)
    {
        for (var w = 0; w < mask.Length; w++)
        {
            var bits = mask[w];
            if (bits == ulong.MaxValue) continue;
            for (int i = w * 64, end = Math.Min(logits.Length, i + 64); i < end; i++)
                if ((bits & (1UL << i)) == 0) logits[i] = float.NegativeInfinity;
        }
    }

    /// <summary>A random allowed token, one holding a closer or quote now and then so that objects finish (not timed).</summary>
    private static int Pick(ulong[] mask, Random random, HfTokenizer tokenizer)
    {
        var wantCloser = random.Next(4) == 0;
        var start = random.Next(mask.Length * 64);
        int? any = null;
        for (var k = 0; k < mask.Length * 64; k++)
        {
            var id = (start + k) % (mask.Length * 64);
            if ((mask[id >> 6] & (1UL << id)) == 0) continue;
            any ??= id;
            if (!wantCloser || tokenizer.TokenBytes(id).IndexOfAny("}]\""u8) >= 0) return id;
        }
        return any ?? throw new InvalidOperationException("no token allowed: a dead end");
    }
}
