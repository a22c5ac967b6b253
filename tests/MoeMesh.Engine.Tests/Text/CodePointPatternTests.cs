using System.Text.RegularExpressions;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Tests.Text;

public sealed class CodePointPatternTests
{
    private static string[] Matches(string pattern, string text) =>
        SplitSequencePreTokenizer.Compile(pattern).Matches(text).Select(m => m.Value).ToArray();

    /// <summary>Sets match whole supplementary-plane characters, by category, range or negation, and never half of one.</summary>
    [Theory]
    [InlineData(@"\p{L}+", "a𝑥𝑦 b", new[] { "a𝑥𝑦", "b" })]
    [InlineData(@"\p{N}{1,3}", "𝟙𝟚𝟛𝟜5", new[] { "𝟙𝟚𝟛", "𝟜5" })]
    [InlineData(@"[^\s\p{L}]+", "😀😀 x🎉", new[] { "😀😀", "🎉" })]
    [InlineData(@"[𠀀-𪛟]+", "a𠀀𠀁b𪛟", new[] { "𠀀𠀁", "𪛟" })]
    [InlineData(@"[^a]", "😀", new[] { "😀" })]
    [InlineData(@"\S+", "😀a 𝑥", new[] { "😀a", "𝑥" })]
    [InlineData(@".", "😀\n", new[] { "😀" })]
    [InlineData(@"😀+", "😀😀x", new[] { "😀😀" })]
    [InlineData(@" ?[\p{P}\p{S}]+", "a 😀!", new[] { " 😀!" })]
    public void Sets_MatchWholeCodePoints(string pattern, string text, string[] expected) =>
        Assert.Equal(expected, Matches(pattern, text));

    /// <summary>Oniguruma syntax outside the subset tokenizer files use is refused when the tokenizer loads, not misread.</summary>
    [Theory]
    [InlineData(@"\w+")]
    [InlineData(@"[[a]b]")]
    [InlineData(@"[a&&b]")]
    [InlineData(@"(a)\1")]
    [InlineData(@"\p{Greek}")]
    [InlineData(@"[a")]
    public void UnsupportedSyntax_IsRefused(string pattern) =>
        Assert.Throws<InvalidDataException>(() => CodePointPattern.Translate(pattern));

    /// <summary>Groups, alternation, quantifiers and lookahead pass through unchanged.</summary>
    [Fact]
    public void StructureOutsideSets_IsKept() =>
        Assert.Equal(new[] { "  ", " x" }, Matches(@"\s+(?!\S)|\s?x", "   x"));
}
