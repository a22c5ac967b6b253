using System.Text;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Incremental detokenisation of one sequence's output with stop strings: text is released only when
/// it is complete UTF-8 and cannot be the start of a stop string. The work per token is bounded by the
/// new tokens and the longest stop string, not by the length of the output: only the tokens after the
/// last character boundary are decoded again, and stop strings are searched in a window at the end.
/// </summary>
internal sealed class OutputText(HfTokenizer? tokenizer, IReadOnlyList<string> stops)
{
    /// <summary>A pending tail this many tokens long is cut at its last character boundary.</summary>
    private const int MaxPendingTokens = 8;

    private readonly int _longestStop = stops.Count == 0 ? 0 : stops.Max(s => s.Length);
    // Output tokens [0, _stableTokens) decode to _stable and end on a character boundary.
    private readonly StringBuilder _stable = new();
    private int _stableTokens;
    private int _emitted;

    /// <summary>
    /// Takes the output tokens <paramref name="tokens"/>[<paramref name="from"/>..<paramref name="to"/>); returns the
    /// releasable new text and whether a stop string ended it.
    /// </summary>
    public (string Delta, bool Stopped) Update(IReadOnlyList<int> tokens, int from, int to, bool final)
    {
        if (tokenizer is null) return ("", false);
        var tail = tokenizer.Decode(Slice(tokens, from + _stableTokens, to));
        // A trailing replacement character is an incomplete UTF-8 sequence still being generated.
        if (tail.Length > 0 && tail[^1] != '\uFFFD')
        {
            Commit(tail, to - from - _stableTokens);
            tail = "";
        }
        else if (to - from - _stableTokens >= MaxPendingTokens)
        {
            tail = CommitLongPending(tokens, from, to);
        }
        // Everything before `start` was searched already and cannot hold the start of a stop string. Text released
        // from the pending tail (which decodes with the same prefix every time) may lie past the stable text.
        var start = Math.Min(Math.Max(0, _emitted - _longestStop), _stable.Length);
        var window = _stable.ToString(start, _stable.Length - start) + tail;
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
        while (!stopped && !final && releasable > _emitted - start && window[releasable - 1] == '\uFFFD') releasable--;
        if (releasable <= _emitted - start) return ("", stopped);
        var delta = window[(_emitted - start)..releasable];
        _emitted = start + releasable;
        return (delta, stopped);
    }

    private void Commit(string text, int tokenCount)
    {
        _stable.Append(text);
        _stableTokens += tokenCount;
    }

    /// <summary>
    /// Bounds the tokens decoded again each step: commits the longest run of pending tokens that ends on a
    /// character boundary (else all but the last token); returns the decoded rest.
    /// </summary>
    private string CommitLongPending(IReadOnlyList<int> tokens, int from, int to)
    {
        var first = from + _stableTokens;
        var count = to - first - 1;
        for (var k = count; k > 0; k--)
        {
            var head = tokenizer!.Decode(Slice(tokens, first, first + k));
            if (head.Length > 0 && head[^1] != '\uFFFD')
            {
                count = k;
                break;
            }
        }
        Commit(tokenizer!.Decode(Slice(tokens, first, first + count)), count);
        return tokenizer.Decode(Slice(tokens, first + count, to));
    }

    private static IEnumerable<int> Slice(IReadOnlyList<int> tokens, int from, int to)
    {
        for (var i = from; i < to; i++) yield return tokens[i];
    }
}
