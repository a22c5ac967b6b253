using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Tests.Text;

public sealed class OutputTextTests
{
    private static readonly HfTokenizer Tokenizer = HfTokenizer.Load(Path.Combine(TestModels.V3Dir, "tokenizer.json"));

    /// <summary>Feeds the tokens one at a time as the engine does and collects the released deltas.</summary>
    private static (List<string> Deltas, bool Stopped) Stream(string text, params string[] stops)
    {
        var prompt = new[] { 1, 2 };
        var tokens = new List<int>(prompt);
        var output = new OutputText(Tokenizer, stops);
        var deltas = new List<string>();
        var ids = Tokenizer.Encode(text);
        for (var i = 0; i < ids.Count; i++)
        {
            tokens.Add(ids[i]);
            var (delta, stopped) = output.Update(tokens, prompt.Length, tokens.Count, final: i == ids.Count - 1);
            if (delta.Length > 0) deltas.Add(delta);
            if (stopped) return (deltas, true);
        }
        return (deltas, false);
    }

    [Theory]
    [InlineData("plain ascii text with several words")]
    [InlineData("你好，世界。こんにちは ünïcödé ✓ 🙂 and more 🙂🙂")]
    public void Deltas_ConcatenateToTheText_WithoutBrokenCharacters(string text)
    {
        var (deltas, stopped) = Stream(text);
        Assert.False(stopped);
        Assert.Equal(text, string.Concat(deltas));
        Assert.DoesNotContain(deltas, d => d.Contains('\uFFFD'));
        Assert.True(Tokenizer.Encode(text).Count > 1);
    }

    [Fact]
    public void StopString_EndsTheText_BeforeIt_AndIsNeverReleased()
    {
        var (deltas, stopped) = Stream("你好 the experts STOP here after", "STOP");
        Assert.True(stopped);
        Assert.Equal("你好 the experts ", string.Concat(deltas));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WorkPerToken_DoesNotGrowWithTheOutput(bool withStops)
    {
        string[] stops = withStops ? ["never appears", "STOP"] : [];
        // Allocation is the deterministic measure of the work: rebuilding the text each token allocates its whole length.
        var ids = Tokenizer.Encode(string.Concat(Enumerable.Repeat("the experts of a mixture route tokens, ", 200)));
        var tokens = new List<int> { 1 };
        var output = new OutputText(Tokenizer, stops);
        long Allocated(int count)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < count; i++)
            {
                tokens.Add(ids[tokens.Count - 1]);
                output.Update(tokens, 1, tokens.Count, final: false);
            }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Allocated(100);
        var early = Allocated(100);
        Allocated(ids.Count - 400);
        var late = Allocated(100);
        Assert.True(ids.Count > 1000, $"{ids.Count} tokens");
        // The late tokens follow some 5000 characters of text; copying it each time would allocate about 10 KB per token.
        Assert.True(late < 2 * early + 100 * 1024, $"100 tokens allocated {early} bytes early and {late} bytes late");
    }

    [Fact]
    public void TokenJoiningASpaceToTheFirstByteOfACharacter_IsReleasedWhole()
    {
        // A byte-level vocabulary where " " and 0xF0 (the first byte of an emoji) merge into one token, as real
        // vocabularies do: the space is released at once, the emoji when its last byte arrives.
        var alphabet = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.Encode([(byte)b])).ToList();
        var vocab = alphabet.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        var merged = alphabet[' '] + alphabet[0xF0];
        vocab[merged] = 256;
        var dir = Path.Combine(Path.GetTempPath(), $"moemesh-split-char-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var json = System.Text.Json.JsonSerializer.Serialize(new
        {
            model = new { type = "BPE", vocab, merges = new[] { $"{alphabet[' ']} {alphabet[0xF0]}" } },
            added_tokens = Array.Empty<object>(),
        });
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json);
        var tokenizer = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        Directory.Delete(dir, recursive: true);
        foreach (var stops in new[] { Array.Empty<string>(), ["STOP"] })
        {
            var ids = tokenizer.Encode("a 😀b 😀");
            Assert.Contains(256, ids);
            var output = new OutputText(tokenizer, stops);
            var tokens = new List<int> { 1 };
            var released = new System.Text.StringBuilder();
            for (var i = 0; i < ids.Count; i++)
            {
                tokens.Add(ids[i]);
                released.Append(output.Update(tokens, 1, tokens.Count, final: i == ids.Count - 1).Delta);
            }
            Assert.Equal("a 😀b 😀", released.ToString());
        }
    }
}
