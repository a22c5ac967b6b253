using System.Text;
using System.Text.RegularExpressions;
using MoeMesh.Engine.Sampling.Grammar;

namespace MoeMesh.Engine.Tests.Sampling.Grammar;

/// <summary>guided_regex: the whole output matches, checked with .NET's regex engine; the output may end where the expression is matched and must end where nothing can follow.</summary>
public sealed class RegexGrammarTests
{
    [Theory]
    [InlineData("(yes|no|maybe)( [0-9]{1,3})?")]
    [InlineData("^[A-Z][a-z]{0,5}, [0-9]{2}$")]
    [InlineData("\\w{1,8}@\\w{1,8}\\.(com|org)")]
    [InlineData("[^\\n]{1,6}\\n[é中x]{2}")]
    [InlineData("\\d+")]
    public void ByteWalks_NeverDeadEnd_AndFullyMatch(string regex)
    {
        var grammar = RegexGrammar.For(regex);
        var dotnet = new Regex("^(?:" + regex.TrimStart('^').TrimEnd('$') + ")\\z");
        var random = new Random(regex.Length);
        var (ended, completed) = (0, 0);
        for (var walk = 0; walk < 300; walk++)
        {
            var state = grammar.Start();
            var text = new List<byte>();
            while (!state.IsComplete)
            {
                // Where the output may end, it does a third of the time (the model's end-of-sequence token).
                if (state.MayEnd && random.Next(3) == 0) { ended++; break; }
                var options = Enumerable.Range(0, 256).Where(b => state.Advance((byte)b) is not null).ToList();
                Assert.True(options.Count > 0 || state.MayEnd, $"'{regex}': dead end after '{Encoding.UTF8.GetString(text.ToArray())}'");
                if (options.Count == 0) { ended++; break; }
                var b = (byte)options[random.Next(options.Count)];
                text.Add(b);
                state = state.Advance(b)!;
                Assert.True(text.Count < 400, $"'{regex}': no end after '{Encoding.UTF8.GetString(text.ToArray())}'");
            }
            if (state.IsComplete) completed++;
            Assert.True(state.MayEnd, "the output ends only where the expression is matched");
            var value = Encoding.UTF8.GetString(text.ToArray());
            Assert.True(dotnet.IsMatch(value), $"'{regex}' does not match '{value}'");
        }
        Assert.True(ended + completed == 300);
    }

    [Fact]
    public void CompleteWhereNothingCanFollow_MayEndWhereMoreCould()
    {
        var yesNo = TokenMasks.Advance(RegexGrammar.For("^(yes|no)$").Start(), "yes"u8)!;
        Assert.True(yesNo.IsComplete && yesNo.MayEnd);
        var digits = TokenMasks.Advance(RegexGrammar.For("\\d+").Start(), "12"u8)!;
        Assert.True(digits.MayEnd && !digits.IsComplete);
        Assert.False(RegexGrammar.For("\\d+").Start().MayEnd);
        Assert.Null(TokenMasks.Advance(RegexGrammar.For("\\d+").Start(), "1a"u8));
        Assert.Same(RegexGrammar.For("\\d+"), RegexGrammar.For("\\d+"));
        Assert.Throws<ArgumentException>(() => RegexGrammar.For("[^\\x00-\\uffff]"));
        // Python's reading, as vLLM's: {,n} is {0,n}; a literal brace must be escaped; nothing but the empty string is refused.
        Assert.True(TokenMasks.Advance(RegexGrammar.For("\\d{,2}").Start(), "5"u8) is { MayEnd: true });
        Assert.Null(TokenMasks.Advance(RegexGrammar.For("\\d{,2}").Start(), "5{"u8));
        Assert.Throws<ArgumentException>(() => RegexGrammar.For("a{"));
        Assert.Throws<ArgumentException>(() => RegexGrammar.For("^$"));
        Assert.Throws<ArgumentException>(() => RegexGrammar.For("(a)\\1"));
    }
}
