using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Engine.Sampling.Grammar;

namespace MoeMesh.Engine.Tests.Sampling.Grammar;

/// <summary>The JSON object grammar against System.Text.Json's parser: it accepts what JSON allows (within its bounds) and nothing else.</summary>
public sealed class JsonObjectGrammarTests
{
    private static GrammarState? Run(string text) => TokenMasks.Advance(JsonObjectGrammar.Instance.Start(), Encoding.UTF8.GetBytes(text));

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"a\":1}")]
    [InlineData("{ \"a\": [1, -2.5e+3, 0, 0.25, 1E9, true, false, null], \"b\": {\"c\": \"d\"} }")]
    [InlineData("{\"s\":\"\\ud55c \\uD7FF \\u0041 \uD7FF\"}")]
    [InlineData("{\"s\":\"quote \\\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t \\u00e9 é 中文 😀\"}")]
    [InlineData("{\"\":[[],{},[{}]]}")]
    [InlineData("{\n\"a\"\n:\n1\n}")]
    public void ValidObjects_AreAcceptedAndComplete(string json)
    {
        Assert.True(Run(json) is { IsComplete: true }, json);
        using var _ = JsonDocument.Parse(json);
    }

    [Theory]
    [InlineData("[1]")]                 // not an object
    [InlineData(" {}")]                 // leading whitespace
    [InlineData("{\"a\":01}")]          // leading zero
    [InlineData("{\"a\":1.}")]          // empty fraction
    [InlineData("{\"a\":.5}")]
    [InlineData("{\"a\":+1}")]
    [InlineData("{\"a\":1,}")]          // trailing comma
    [InlineData("{\"a\" 1}")]
    [InlineData("{a:1}")]
    [InlineData("{\"a\":tru}")]
    [InlineData("{\"a\":\"\\x\"}")]     // unknown escape
    [InlineData("{\"a\":\"\\ud800\"}")] // surrogate escape
    [InlineData("{\"a\":\"\\uDFFF\"}")]
    [InlineData("{\"a\":\"\t\"}")]      // control character
    [InlineData("{\"a\":1}}")]          // past the end
    [InlineData("{\"a\":[1}")]          // wrong closer
    [InlineData("{\"a\":1}     ")]      // nothing follows the object
    public void InvalidText_IsRejected(string text)
    {
        Assert.Null(Run(text));
    }

    [Fact]
    public void InvalidUtf8_IsRejected()
    {
        // A stray continuation byte, overlong forms, a cut character, a surrogate, past U+10FFFF, bytes never in UTF-8.
        foreach (var bytes in new[] { new byte[] { 0x80 }, [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xF0, 0x80, 0x80, 0x80], [0xE4, 0x41],
                     [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF] })
        {
            var text = Encoding.UTF8.GetBytes("{\"a\":\"").Concat(bytes).Concat("\"}"u8.ToArray()).ToArray();
            Assert.Null(TokenMasks.Advance(JsonObjectGrammar.Instance.Start(), text));
        }
    }

    [Fact]
    public void Bounds_StopRunawayNestingNumbersAndWhitespace()
    {
        Assert.NotNull(Run("{\"a\":" + new string('[', JsonObjectGrammar.MaxDepth - 1)));
        Assert.Null(Run("{\"a\":" + new string('[', JsonObjectGrammar.MaxDepth)));
        Assert.NotNull(Run("{\"a\":" + new string('1', JsonObjectGrammar.MaxNumberLength)));
        Assert.Null(Run("{\"a\":" + new string('1', JsonObjectGrammar.MaxNumberLength + 1)));
        // The bound never strands a number: no '.' or exponent without room for the digit that must follow.
        Assert.Null(Run("{\"a\":" + new string('1', JsonObjectGrammar.MaxNumberLength - 1) + "."));
        Assert.Null(Run("{\"a\":" + new string('1', JsonObjectGrammar.MaxNumberLength - 2) + "e-"));
        Assert.True(Run("{\"a\":" + new string('1', JsonObjectGrammar.MaxNumberLength - 2) + ".5}") is { IsComplete: true });
        Assert.NotNull(Run("{\r\n" + new string(' ', JsonObjectGrammar.MaxWhitespace - 3) + "\t"));
        Assert.Null(Run("{" + new string(' ', JsonObjectGrammar.MaxWhitespace + 1)));
    }

    /// <summary>
    /// Every state reachable through structure, digits, literals, escapes and spacing (explored breadth first, one per
    /// key, nesting kept to two levels so that the search reaches the length bounds) accepts some byte, unless the
    /// object is complete: no bound strands the output.
    /// </summary>
    [Fact]
    public void NoReachableState_IsADeadEnd()
    {
        var alphabet = "{}[]\":,0123456789.eE+-truefalsn x\\/u \n"u8.ToArray().Distinct().ToArray();
        var seen = new HashSet<string>();
        var queue = new Queue<GrammarState>([JsonObjectGrammar.Instance.Start()]);
        while (queue.Count > 0 && seen.Count < 50_000)
        {
            var state = queue.Dequeue();
            if (!seen.Add(state.Key) || state.IsComplete) continue;
            Assert.True(Enumerable.Range(0, 256).Any(b => state.Advance((byte)b) is not null), $"dead end at {state.Key}");
            foreach (var b in alphabet)
                if (state.Advance(b) is { } next && !seen.Contains(next.Key) && next.Key.Split('|')[1].Length <= 2) queue.Enqueue(next);
        }
        Assert.True(seen.Count > 500, $"explored only {seen.Count} states");
    }

    /// <summary>
    /// Seeded random objects written with random spacing are accepted; every one-byte change of them that the grammar
    /// still accepts as a whole object, System.Text.Json parses as an object: the grammar never lets invalid JSON through.
    /// </summary>
    [Fact]
    public void RandomObjectsAndTheirMutations_AgreeWithSystemTextJson()
    {
        var random = new Random(7);
        var accepted = 0;
        for (var n = 0; n < 400; n++)
        {
            var json = Write(RandomObject(random, 0), random);
            Assert.True(Run(json) is { IsComplete: true }, json);
            var bytes = Encoding.UTF8.GetBytes(json);
            for (var m = 0; m < 20; m++)
            {
                var mutated = (byte[])bytes.Clone();
                mutated[random.Next(mutated.Length)] = (byte)"{}[]\",:0123456789.eE+-tfnul \\\n\x01"[random.Next(31)];
                if (TokenMasks.Advance(JsonObjectGrammar.Instance.Start(), mutated) is not { IsComplete: true }) continue;
                accepted++;
                using var doc = JsonDocument.Parse(mutated);
                Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
            }
        }
        Assert.True(accepted > 100, $"only {accepted} mutations were accepted: the check saw too few");
    }

    private static JsonNode? RandomValue(Random random, int depth) => random.Next(depth > 3 ? 5 : 7) switch
    {
        0 => JsonValue.Create(random.Next(-1000, 1000)),
        1 => JsonValue.Create(Math.Round(random.NextDouble() * 1000 - 500, 3)),
        2 => JsonValue.Create(new string(Enumerable.Range(0, random.Next(8)).Select(_ => "aZ \"\\/\n\té中😀"[random.Next(11)]).ToArray()).Replace("\ud83d", "").Replace("\ude00", "")),
        3 => JsonValue.Create(random.Next(2) == 0),
        4 => null,
        5 => new JsonArray(Enumerable.Range(0, random.Next(4)).Select(_ => RandomValue(random, depth + 1)).ToArray()),
        _ => RandomObject(random, depth + 1),
    };

    private static JsonObject RandomObject(Random random, int depth)
    {
        var o = new JsonObject();
        for (var i = random.Next(4); i > 0; i--) o[$"k{random.Next(100)}"] = RandomValue(random, depth + 1);
        return o;
    }

    /// <summary>Compact JSON with a space or newline after some structural characters.</summary>
    private static string Write(JsonNode node, Random random)
    {
        var compact = node.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        var text = new StringBuilder();
        var inString = false;
        for (var i = 0; i < compact.Length; i++)
        {
            var c = compact[i];
            text.Append(c);
            if (inString && c == '\\')
            {
                text.Append(compact[++i]); // an escape: the next character is part of it
                continue;
            }
            if (c == '"') inString = !inString;
            else if (!inString && c is ',' or ':' or '{' or '[' && random.Next(3) == 0) text.Append(random.Next(2) == 0 ? " " : "\n  ");
        }
        return text.ToString();
    }
}
