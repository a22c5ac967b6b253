using System.Text;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Sampling.Grammar;
using MoeMesh.Engine.Text;
using MoeMesh.Testing;

namespace MoeMesh.Engine.Tests.Sampling.Grammar;

/// <summary>Token masks from the vocabulary trie: exactly the tokens whose bytes the grammar accepts, and never none before the output is complete.</summary>
public sealed class TokenMasksTests
{
    private static readonly string[] Prefixes = ["", "{", "{\"a\":", "{\"a\":\"x", "{\"a\":12", "{\"a\":[", "{\"a\":[true", "{\"a\":{\"b\":null}", "{\"a\":\"\\u00", "{\"a\":\"\xE4\xB8"];

    /// <summary>On DeepSeek-V3's 129k vocabulary, each mask equals running the grammar over every token's bytes.</summary>
    [Fact]
    public void Mask_IsExactlyTheTokensTheGrammarAccepts_OnDeepSeekV3sVocabulary()
    {
        var tokenizer = HfTokenizer.Load(TokenizerOracle.DeepSeekV3Tokenizer);
        var masks = new TokenMasks(tokenizer, tokenizer.VocabularySize);
        foreach (var prefix in Prefixes)
            AssertExact(masks, tokenizer, TokenMasks.Advance(JsonObjectGrammar.Instance.Start(), Latin1OrUtf8(prefix)), prefix);
        // The end-of-sequence token is never in a mask: the grammar ends the output itself.
        Assert.False(TokenMasks.IsAllowed(masks.Allowed(JsonObjectGrammar.Instance.Start()), 1));
    }

    /// <summary>
    /// Seeded random walks over the demo vocabulary, each step a random allowed token: the mask is never empty until the
    /// object is complete, and a completed walk's text parses as a JSON object.
    /// </summary>
    [Fact]
    public void RandomWalks_NeverReachADeadEnd()
    {
        var dir = DemoModel.EnsureCached(Path.Combine(Path.GetTempPath(), "moemesh-engine-tests"), DemoShape.Tiny, seed: 1);
        var tokenizer = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var masks = new TokenMasks(tokenizer, tokenizer.VocabularySize);
        var random = new Random(11);
        var completed = 0;
        for (var walk = 0; walk < 200; walk++)
        {
            var state = JsonObjectGrammar.Instance.Start();
            var text = new List<byte>();
            for (var step = 0; step < 400 && !state.IsComplete; step++)
            {
                var mask = masks.Allowed(state);
                var allowed = Enumerable.Range(0, tokenizer.VocabularySize).Where(id => TokenMasks.IsAllowed(mask, id)).ToList();
                Assert.True(allowed.Count > 0, $"dead end after '{Encoding.UTF8.GetString(text.ToArray())}'");
                // Prefer structure now and then so that walks finish: a token holding a closer or quote half the time.
                var closers = allowed.Where(id => tokenizer.TokenBytes(id).IndexOfAny("}]\""u8) >= 0).ToList();
                var token = closers.Count > 0 && random.Next(2) == 0 ? closers[random.Next(closers.Count)] : allowed[random.Next(allowed.Count)];
                text.AddRange(tokenizer.TokenBytes(token).ToArray());
                state = TokenMasks.Advance(state, tokenizer.TokenBytes(token))!;
            }
            if (!state.IsComplete) continue;
            completed++;
            using var doc = System.Text.Json.JsonDocument.Parse(text.ToArray());
            Assert.Equal(System.Text.Json.JsonValueKind.Object, doc.RootElement.ValueKind);
        }
        Assert.True(completed > 100, $"only {completed} of 200 walks completed");
    }

    /// <summary>The mask after <paramref name="prefix"/> allows exactly the tokens whose bytes the grammar accepts from <paramref name="state"/>, and some.</summary>
    internal static void AssertExact(TokenMasks masks, HfTokenizer tokenizer, GrammarState? state, string prefix)
    {
        Assert.True(state is not null, $"'{prefix}' leaves the grammar");
        var mask = masks.Allowed(state);
        var allowed = 0;
        for (var id = 0; id < tokenizer.VocabularySize; id++)
        {
            var bytes = tokenizer.TokenBytes(id, skipSpecialTokens: true);
            var expected = !bytes.IsEmpty && TokenMasks.Advance(state, bytes) is not null;
            if (expected != TokenMasks.IsAllowed(mask, id))
                Assert.Fail($"after '{prefix}': token {id} ({tokenizer.TokenText(id)}) is {(expected ? "accepted" : "rejected")} by the grammar but the mask says otherwise");
            if (expected) allowed++;
        }
        Assert.True(allowed > 0, $"nothing allowed after '{prefix}'");
    }

    /// <summary>The prefix's bytes: characters above U+00FF as UTF-8, the rest as single bytes (to write partial UTF-8).</summary>
    private static byte[] Latin1OrUtf8(string s) => s.Any(c => c > 0xFF) ? Encoding.UTF8.GetBytes(s) : Encoding.Latin1.GetBytes(s);
}
