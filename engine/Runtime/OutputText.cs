using System.Text;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Incremental detokenisation of one sequence's output with stop strings. Each new token's own bytes (special tokens
/// skipped, as a whole decode skips them) go through one stateful UTF-8 decoder, which holds an incomplete character
/// until its last byte arrives, so the released text is exactly what decoding the whole output gives; text is
/// released once it cannot be the start of a stop string. The work per token is bounded by the new tokens and the
/// longest stop string, not by the length of the output: stop strings are searched in a window at the end.
/// </summary>
internal sealed class OutputText(HfTokenizer? tokenizer, IReadOnlyList<string> stops)
{
    private readonly int _longestStop = stops.Count == 0 ? 0 : stops.Max(s => s.Length);
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    // The output decoded so far (output tokens [0, _decodedTokens)), of which [0, _emitted) is released.
    private readonly StringBuilder _text = new();
    private int _decodedTokens;
    private int _emitted;

    /// <summary>
    /// Takes the output tokens <paramref name="tokens"/>[<paramref name="from"/>..<paramref name="to"/>) (those past
    /// the ones taken before); returns the releasable new text and whether a stop string ended it.
    /// </summary>
    public (string Delta, bool Stopped) Update(IReadOnlyList<int> tokens, int from, int to, bool final)
    {
        if (tokenizer is null) return ("", false);
        var bytes = new List<byte>();
        for (var i = from + _decodedTokens; i < to; i++) bytes.AddRange(tokenizer.TokenBytes(tokens[i], skipSpecialTokens: true));
        _decodedTokens = to - from;
        // At most one character a byte, and two for the bytes of an incomplete character held from before.
        var chars = new char[bytes.Count + 2];
        _text.Append(chars, 0, _utf8.GetChars(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes), chars, flush: final));
        // Everything before `start` was searched already and cannot hold the start of a stop string.
        var start = Math.Max(0, _emitted - _longestStop);
        var window = _text.ToString(start, _text.Length - start);
        var end = window.Length;
        var stopped = false;
        foreach (var stop in stops)
        {
            var at = window.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && at < end)
            {
                end = at;
                stopped = true;
            }
        }
        var releasable = stopped || final ? end : end - Math.Max(0, _longestStop - 1);
        if (releasable <= _emitted - start) return ("", stopped);
        var delta = window[(_emitted - start)..releasable];
        _emitted = start + releasable;
        return (delta, stopped);
    }
}
