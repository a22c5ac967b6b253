using System.Text;
using System.Text.RegularExpressions;
using MoeMesh.Engine.Sampling.Grammar;

namespace MoeMesh.Engine.Tests.Sampling.Grammar;

/// <summary>
/// JSON Schema patterns as automata, against .NET's own regex engine on seeded random strings (ASCII, line
/// terminators, a few non-ASCII letters): whatever the automaton matches .NET matches, and on ASCII they agree.
/// </summary>
public sealed class PatternTests
{
    [Theory]
    [InlineData("^[0-9]{5}(-[0-9]{4})?$", "12345-6789")]
    [InlineData("cat|dog", "a dog")]
    [InlineData("^(cat|dog)s?$", "cats")]
    [InlineData("^.{2,4}$", "abc")]
    [InlineData("a.c", "xabcx")]
    [InlineData("^[^a-c\\n]+x$", "zzx")]
    [InlineData("^\\w+@\\w+\\.[a-z]{2,3}$", "a_1@b2.com")]
    [InlineData("(ab)*c+$", "ababcc")]
    [InlineData("^a{2,}b{0,2}$", "aaab")]
    [InlineData("^(?:x|y)(?<n>z)?\\s\\d$", "yz 5")]
    [InlineData("^[\\u00e9\\x41-\\x43]é?$", "Bé")]
    [InlineData("\\.json$", "a.json")]
    [InlineData("^a*?b+?$", "aabb")]
    [InlineData("^{x}$", "{x}")]
    public void Automaton_MatchesWhereDotNetRegexDoes(string pattern, string example)
    {
        var automaton = new Pattern(pattern);
        // ECMA-262's $ (what JSON Schema and the automaton read) is the end; .NET's also matches before a final newline.
        var regex = new Regex(pattern.EndsWith('$') ? pattern[..^1] + "\\z" : pattern);
        const string alphabet = "abcdxyz0159-_@.ABC é中\n\r\t{}sjon\u2028";
        var random = new Random(pattern.Length);
        var (matches, misses) = (0, 0);
        for (var n = 0; n < 4000; n++)
        {
            // Random strings, and the example with a few characters changed, added or removed.
            var text = n % 2 == 0 ? new string(Enumerable.Range(0, random.Next(9)).Select(_ => alphabet[random.Next(alphabet.Length)]).ToArray()) : Mutate(example, alphabet, random);
            var state = automaton.Initial;
            foreach (var c in text)
                if (state >= 0) state = automaton.Step(state, c);
            var ours = state >= 0 && automaton.Accepts(state);
            var theirs = regex.IsMatch(text);
            // What the automaton matches, .NET matches (a constrained output never fails a .NET-based validator);
            // on ASCII without \r they agree exactly. Elsewhere the automaton is stricter: its \w \d \s are ASCII,
            // and its '.' leaves out \r and U+2028, as ECMA-262's does.
            if (ours || text.All(c => c < 0x80 && c != '\r'))
                Assert.True(ours == theirs, $"'{pattern}' on '{Escape(text)}': ours {ours}, .NET {theirs}");
            if (ours) matches++;
            else misses++;
        }
        Assert.True(matches > 100 && misses > 100, $"{matches} matching and {misses} other strings: the check saw too few of one kind");
    }

    private static string Escape(string text) => string.Concat(text.Select(c => c < 0x20 || c > 0x7E ? $"\\u{(int)c:x4}" : c.ToString()));

    private static string Mutate(string example, string alphabet, Random random)
    {
        var text = new StringBuilder(example);
        for (var k = random.Next(3); k > 0; k--)
        {
            var at = random.Next(text.Length + 1);
            switch (random.Next(3))
            {
                case 0: text.Insert(at, alphabet[random.Next(alphabet.Length)]); break;
                case 1 when at < text.Length: text.Remove(at, 1); break;
                default: if (at < text.Length) text[at] = alphabet[random.Next(alphabet.Length)]; break;
            }
        }
        return text.ToString();
    }

    /// <summary>Once a pattern not anchored at the end has matched, the rest of the string is free (past U+FFFF too); before, characters stay in the BMP.</summary>
    [Fact]
    public void AfterAnUnanchoredMatch_TheRestIsFree()
    {
        var grammar = new SchemaGrammar(new PatternNode(new Pattern("cat")));
        Assert.True(TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes("\"a cat 😀 \\n\"")) is { IsComplete: true });
        Assert.Null(TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes("\"😀 cat\"")));
        Assert.Null(TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes("\"a ca\"")));
    }

    [Fact]
    public void EveryReachablePrefix_CanBeFinished()
    {
        // Byte walks through a string under each pattern: wherever a byte was taken, some byte still leads on, until the closing quote.
        foreach (var pattern in new[] { "^[0-9]{5}(-[0-9]{4})?$", "^(cat|dog)s?$", "^.{2,4}$", "^[é中]x$", "^[\\u0800-\\u0801]$", "^\\u00ff$" })
        {
            var grammar = new SchemaGrammar(new PatternNode(new Pattern(pattern)));
            var random = new Random(1);
            for (var walk = 0; walk < 200; walk++)
            {
                var state = grammar.Start();
                var text = new List<byte>();
                while (!state.IsComplete)
                {
                    var options = Enumerable.Range(0, 256).Where(b => state.Advance((byte)b) is not null).ToList();
                    Assert.True(options.Count > 0, $"'{pattern}': dead end after {Encoding.UTF8.GetString(text.ToArray())}");
                    var b = (byte)options[random.Next(options.Count)];
                    text.Add(b);
                    state = state.Advance(b)!;
                    Assert.True(text.Count < 200, $"'{pattern}': no end after {Encoding.UTF8.GetString(text.ToArray())}");
                }
                var value = System.Text.Json.JsonDocument.Parse(text.ToArray()).RootElement.GetString()!;
                Assert.Matches(pattern, value);
            }
        }
    }
}
