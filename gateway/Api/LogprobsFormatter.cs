using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Text;

namespace MoeMesh.Gateway.Api;

/// <summary>Renders log-probabilities in the completions and chat shapes.</summary>
public sealed class LogprobsFormatter(HfTokenizer tokenizer, bool tokensAsIds)
{
    public string Token(int id) => tokensAsIds ? $"token_id:{id}" : tokenizer.TokenText(id);

    /// <summary>Completions shape; a null entry (the first prompt token under echo) has no logprob.</summary>
    public object Completions(IReadOnlyList<(int TokenId, TokenLogprob? Logprob)> tokens, int textOffset)
    {
        var strings = new List<string>();
        var logprobs = new List<float?>();
        var tops = new List<Dictionary<string, float>?>();
        var offsets = new List<int>();
        foreach (var (id, lp) in tokens)
        {
            var text = Token(id);
            strings.Add(text);
            offsets.Add(textOffset);
            textOffset += tokenizer.TokenText(id).Length;
            logprobs.Add(lp?.Logprob);
            if (lp is null) { tops.Add(null); continue; }
            var top = new Dictionary<string, float>();
            foreach (var (t, l) in lp.Top) top.TryAdd(Token(t), l);
            tops.Add(top);
        }
        return new { tokens = strings, token_logprobs = logprobs, top_logprobs = tops, text_offset = offsets };
    }

    /// <summary>Chat shape: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}.</summary>
    public object Chat(IEnumerable<TokenLogprob> tokens) => new
    {
        content = tokens.Select(lp => new
        {
            token = Token(lp.TokenId),
            logprob = lp.Logprob,
            bytes = Bytes(lp.TokenId),
            top_logprobs = lp.Top.Select(t => new { token = Token(t.TokenId), logprob = t.Logprob, bytes = Bytes(t.TokenId) }).ToList(),
        }).ToList(),
    };

    /// <summary>The token's own bytes (OpenAI's field for rebuilding text split across tokens): part of a UTF-8 character for some.</summary>
    private int[] Bytes(int id) => tokenizer.TokenBytes(id).Select(b => (int)b).ToArray();
}
