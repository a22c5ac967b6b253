using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Incremental detokenisation of one sequence's output with stop strings: text is released only when
/// it is complete UTF-8 and cannot be the start of a stop string.
/// </summary>
internal sealed class OutputText(HfTokenizer? tokenizer, IReadOnlyList<string> stops)
{
    private readonly int _holdBack = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;
    private int _emitted;
    // Output tokens [0, _stableTokens) decode to _stableText and end on a character boundary, so only
    // the tokens after them are decoded again each step.
    private int _stableTokens;
    private string _stableText = "";

    public string Text { get; private set; } = "";

    /// <summary>
    /// Takes the output tokens <paramref name="tokens"/>[<paramref name="from"/>..<paramref name="to"/>); returns the
    /// releasable new text and whether a stop string ended it.
    /// </summary>
    public (string Delta, bool Stopped) Update(IReadOnlyList<int> tokens, int from, int to, bool final)
    {
        if (tokenizer is null) return ("", false);
        var tail = tokenizer.Decode(Slice(tokens, from + _stableTokens, to));
        var full = _stableText + tail;
        // A trailing replacement character is an incomplete UTF-8 sequence still being generated.
        if (tail.Length > 0 && tail[^1] != '\uFFFD')
        {
            _stableText = full;
            _stableTokens = to - from;
        }
        var stopped = false;
        foreach (var stop in stops)
        {
            var at = full.IndexOf(stop, Math.Max(0, _emitted - stop.Length), StringComparison.Ordinal);
            if (at >= 0)
            {
                full = full[..at];
                stopped = true;
            }
        }
        Text = full;
        var releasable = stopped || final ? full.Length : full.Length - _holdBack;
        while (!stopped && !final && releasable > _emitted && full[releasable - 1] == '\uFFFD') releasable--;
        if (releasable <= _emitted) return ("", stopped);
        var delta = full[_emitted..releasable];
        _emitted = releasable;
        return (delta, stopped);
    }

    private static IEnumerable<int> Slice(IReadOnlyList<int> tokens, int from, int to)
    {
        for (var i = from; i < to; i++) yield return tokens[i];
    }
}
