using System.Text;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// vLLM's deepseek_r1 reasoning parser (--reasoning-parser deepseek_r1): a reasoning model's output is its reasoning
/// up to "&lt;/think&gt;", then its answer; the chat API returns them as reasoning_content and content. A leading
/// "&lt;think&gt;" is dropped (DeepSeek-R1's template opens the block in the prompt, so the output usually starts inside
/// it); without "&lt;/think&gt;" the whole output is reasoning, as vLLM's parser has it. Streamed, each delta's text is
/// split as it arrives, holding back only a tail that could still turn out to be the start of either marker, so the
/// deltas concatenate to what <see cref="Split"/> gives for the whole output. Where the prompt itself closed the block
/// (DeepSeek-V3.1 and Qwen3 with thinking off end the prompt with "&lt;/think&gt;"), the whole output is the answer.
/// </summary>
public sealed class ReasoningParser(bool answerOnly = false)
{
    public const string Start = "<think>", End = "</think>";

    private readonly StringBuilder _text = new();
    private bool _startDecided;
    private int _reasoningEmitted;
    private int _contentEmitted;
    private int _searchFrom;
    private int _endAt = -1;

    /// <summary>Whether a rendered chat prompt ends with the reasoning block closed, so that the output is all answer.</summary>
    public static bool ClosedBy(string prompt) => prompt.TrimEnd().EndsWith(End, StringComparison.Ordinal);

    /// <summary>The whole output's reasoning and answer; null for an empty part.</summary>
    public static (string? Reasoning, string? Content) Split(string output, bool answerOnly = false)
    {
        if (answerOnly) return (null, output.Length == 0 ? null : output);
        if (output.StartsWith(Start, StringComparison.Ordinal)) output = output[Start.Length..];
        var end = output.IndexOf(End, StringComparison.Ordinal);
        var (reasoning, content) = end < 0 ? (output, "") : (output[..end], output[(end + End.Length)..]);
        return (reasoning.Length == 0 ? null : reasoning, content.Length == 0 ? null : content);
    }

    /// <summary>Takes the next text delta (<paramref name="final"/>: the output ends with it); returns the reasoning and answer text now releasable.</summary>
    public (string Reasoning, string Content) Feed(string delta, bool final)
    {
        if (answerOnly) return ("", delta);
        _text.Append(delta);
        if (!_startDecided)
        {
            // Whether the output opens with "<think>": undecided while it is still a prefix of the marker.
            var head = _text.ToString(0, Math.Min(_text.Length, Start.Length));
            if (!final && head.Length < Start.Length && Start.StartsWith(head, StringComparison.Ordinal)) return ("", "");
            _startDecided = true;
            _reasoningEmitted = _searchFrom = head == Start ? Start.Length : 0;
        }
        if (_endAt < 0)
        {
            var at = _text.ToString(_searchFrom, _text.Length - _searchFrom).IndexOf(End, StringComparison.Ordinal);
            if (at >= 0) _endAt = _searchFrom + at;
            else _searchFrom = Math.Max(_searchFrom, _text.Length - (End.Length - 1));
        }
        string reasoning;
        var content = "";
        if (_endAt < 0)
        {
            var until = final ? _text.Length : _text.Length - HeldBack();
            reasoning = _text.ToString(_reasoningEmitted, Math.Max(0, until - _reasoningEmitted));
            _reasoningEmitted = Math.Max(_reasoningEmitted, until);
        }
        else
        {
            reasoning = _text.ToString(_reasoningEmitted, Math.Max(0, _endAt - _reasoningEmitted));
            _reasoningEmitted = Math.Max(_reasoningEmitted, _endAt);
            var from = Math.Max(_contentEmitted, _endAt + End.Length);
            content = _text.ToString(from, _text.Length - from);
            _contentEmitted = _text.Length;
        }
        return (reasoning, content);
    }

    /// <summary>The longest tail of the unreleased reasoning that is a proper prefix of "&lt;/think&gt;".</summary>
    private int HeldBack()
    {
        var available = _text.Length - _reasoningEmitted;
        for (var k = Math.Min(End.Length - 1, available); k > 0; k--)
            if (_text.ToString(_text.Length - k, k) == End[..k]) return k;
        return 0;
    }
}
