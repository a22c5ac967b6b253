using System.Text;
using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Text;

namespace MoeMesh.Gateway.Api;

/// <summary>Renders log-probabilities in the completions and chat shapes.</summary>
public sealed class LogprobsFormatter(HfTokenizer tokenizer, bool tokensAsIds)
{
    public string Token(int id) => tokensAsIds ? $"token_id:{id}" : tokenizer.TokenText(id);

    /// <summary>
    /// Completions shape; a null entry (the first prompt token under echo) has no logprob. The first
    /// <paramref name="promptTokens"/> entries are an echoed prompt's (the text shows their special tokens, but not a
    /// beginning-of-sequence token added to a text prompt, <paramref name="bosAdded"/>); the rest are generated (the
    /// text skips their special tokens). Each text_offset is where the token's first character starts in the text
    /// (the character it completes, for a token that starts inside one): the tokens' own bytes go through a UTF-8
    /// decoder as the text was decoded.
    /// </summary>
    public object Completions(IReadOnlyList<(int TokenId, TokenLogprob? Logprob)> tokens, int textOffset, int promptTokens = 0, bool bosAdded = false)
    {
        var strings = new List<string>();
        var logprobs = new List<float?>();
        var tops = new List<Dictionary<string, float>?>();
        var offsets = new List<int>();
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
        for (var i = 0; i < tokens.Count; i++)
        {
            var (id, lp) = tokens[i];
            strings.Add(Token(id));
            offsets.Add(textOffset);
            var bytes = i == 0 && bosAdded && promptTokens > 0 ? [] : tokenizer.TokenBytes(id, skipSpecialTokens: i >= promptTokens);
            // At most one character a byte, and two for the bytes of a character held from the token before.
            textOffset += utf8.GetChars(bytes, new char[bytes.Length + 2], flush: false);
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
    private int[] Bytes(int id)
    {
        var bytes = tokenizer.TokenBytes(id);
        var values = new int[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) values[i] = bytes[i];
        return values;
    }
}
