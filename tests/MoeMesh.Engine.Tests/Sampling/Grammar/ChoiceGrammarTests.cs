using System.Text;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Sampling.Grammar;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Tests.Sampling.Grammar;

public sealed class ChoiceGrammarTests
{
    private static readonly string[] Choices = ["red", "green", "blue", "grün 🙂"];

    [Fact]
    public void ExactlyTheChoices_AreAcceptedAndComplete()
    {
        var grammar = new ChoiceGrammar(Choices);
        foreach (var c in Choices) Assert.True(TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes(c)) is { IsComplete: true }, c);
        foreach (var c in new[] { "re", "gre", "grün" }) Assert.True(TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes(c)) is { IsComplete: false }, c);
        foreach (var c in new[] { "redd", "x", "Red", "blue " }) Assert.Null(TokenMasks.Advance(grammar.Start(), Encoding.UTF8.GetBytes(c)));
    }

    [Theory]
    [InlineData("yes|yes please")]
    [InlineData("a|a")]
    [InlineData("")]
    [InlineData("x|")]
    public void AmbiguousOrEmptyChoices_AreRefused(string choices)
    {
        Assert.Throws<ArgumentException>(() => new ChoiceGrammar(choices.Length == 0 ? [] : choices.Split('|')));
    }

    /// <summary>Seeded random walks over the demo vocabulary's masks always end in one of the choices.</summary>
    [Fact]
    public void RandomWalks_EndInAChoice()
    {
        var dir = DemoModel.EnsureCached(Path.Combine(Path.GetTempPath(), "moemesh-engine-tests"), DemoShape.Tiny, seed: 1);
        var tokenizer = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var masks = new TokenMasks(tokenizer, tokenizer.VocabularySize);
        var grammar = new ChoiceGrammar(Choices);
        var random = new Random(5);
        for (var walk = 0; walk < 100; walk++)
        {
            var state = grammar.Start();
            var text = new List<byte>();
            while (!state.IsComplete)
            {
                var mask = masks.Allowed(state);
                var allowed = Enumerable.Range(0, tokenizer.VocabularySize).Where(id => TokenMasks.IsAllowed(mask, id)).ToList();
                Assert.NotEmpty(allowed);
                var token = allowed[random.Next(allowed.Count)];
                text.AddRange(tokenizer.TokenBytes(token).ToArray());
                state = TokenMasks.Advance(state, tokenizer.TokenBytes(token))!;
            }
            Assert.Contains(Encoding.UTF8.GetString(text.ToArray()), Choices);
        }
    }
}
