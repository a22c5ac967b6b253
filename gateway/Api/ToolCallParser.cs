using System.Text;
using System.Text.Json;

namespace MoeMesh.Gateway.Api;

/// <summary>One function call the model made, as the chat API returns it.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>
/// DeepSeek's tool-call output, parsed as vLLM's deepseek_v3 and deepseek_v31 parsers do: text up to
/// "&lt;｜tool▁calls▁begin｜&gt;" is content; then each "&lt;｜tool▁call▁begin｜&gt;HEAD&lt;｜tool▁sep｜&gt;BODY&lt;｜tool▁call▁end｜&gt;" is a call,
/// in DeepSeek-V3/R1's form (HEAD "function", BODY the name, a newline and the arguments in a ```json fence) or
/// DeepSeek-V3.1's (HEAD the name, BODY the arguments). From a call whose name is not one of the request's tools or
/// whose arguments are not a JSON object, or that the output leaves unfinished, the output is text in content as the
/// model wrote it: malformed output is returned, never dropped. A call ends at the first end marker before which it
/// parses (its arguments may hold the marker in a string). Streamed, content is released as it arrives except a tail that could still start the
/// calls marker, and each call once it is complete, so the deltas add up to what the whole output parses to.
/// </summary>
public sealed class ToolCallParser(IReadOnlyCollection<string> toolNames)
{
    public const string CallsBegin = "<｜tool▁calls▁begin｜>", CallsEnd = "<｜tool▁calls▁end｜>";
    public const string CallBegin = "<｜tool▁call▁begin｜>", CallEnd = "<｜tool▁call▁end｜>", Separator = "<｜tool▁sep｜>";

    private readonly StringBuilder _pending = new();
    private bool _inCalls;
    // Whether the calls marker was taken and no call since: malformed text after it is returned with the marker.
    private bool _markerUnclaimed;
    // After a malformed call, the rest of the output is text.
    private bool _passThrough;

    /// <summary>The whole output's content (null when empty) and calls.</summary>
    public static (string? Content, List<ToolCall> Calls) Parse(string output, IReadOnlyCollection<string> toolNames)
    {
        var (content, calls) = new ToolCallParser(toolNames).Feed(output, final: true);
        return (content.Length == 0 ? null : content, calls);
    }

    /// <summary>Takes the next text delta (<paramref name="final"/>: the output ends with it); returns the content now releasable and the calls now complete.</summary>
    public (string Content, List<ToolCall> Calls) Feed(string delta, bool final)
    {
        if (_passThrough) return (delta, []);
        _pending.Append(delta);
        var content = new StringBuilder();
        var calls = new List<ToolCall>();
        while (true)
        {
            var text = _pending.ToString();
            if (!_inCalls)
            {
                var at = text.IndexOf(CallsBegin, StringComparison.Ordinal);
                if (at < 0)
                {
                    var keep = final ? 0 : PrefixTail(text, CallsBegin);
                    content.Append(text, 0, text.Length - keep);
                    _pending.Remove(0, text.Length - keep);
                    break;
                }
                content.Append(text, 0, at);
                _pending.Remove(0, at + CallsBegin.Length);
                _inCalls = _markerUnclaimed = true;
                continue;
            }
            // Inside the calls: whitespace between calls is dropped; the calls' end marker closes the section.
            var lead = text.Length - text.TrimStart().Length;
            var rest = text[lead..];
            if (rest.StartsWith(CallsEnd, StringComparison.Ordinal))
            {
                _pending.Remove(0, lead + CallsEnd.Length);
                _inCalls = false;
                continue;
            }
            if (rest.StartsWith(CallBegin, StringComparison.Ordinal))
            {
                // The call ends at the first end marker before which it parses: the marker may also appear inside
                // a string of the arguments.
                var (end, call) = (-1, (ToolCall?)null);
                for (var at = rest.IndexOf(CallEnd, StringComparison.Ordinal); at >= 0 && call is null; at = rest.IndexOf(CallEnd, at + 1, StringComparison.Ordinal))
                    (end, call) = (at, Call(rest[CallBegin.Length..at]));
                if (call is null)
                {
                    // Not (yet) a call this request can take; at the end of the output it and everything after it come back as text, as written.
                    if (final) Unparsed(content, text);
                    break;
                }
                var raw = rest[..(end + CallEnd.Length)];
                calls.Add(call);
                _markerUnclaimed = false;
                _pending.Remove(0, lead + raw.Length);
                continue;
            }
            // Anything else inside the section (or an unfinished marker at the end) is not a call.
            if (final && rest.Length == 0)
            {
                _pending.Clear();
                break;
            }
            if (!final && (rest.Length == 0 || CallBegin.StartsWith(rest, StringComparison.Ordinal) || CallsEnd.StartsWith(rest, StringComparison.Ordinal)))
                break;
            Unparsed(content, text);
            break;
        }
        return (content.ToString(), calls);
    }

    /// <summary>Text in the calls section that is not a well-formed call: returned as content, with all that follows.</summary>
    private void Unparsed(StringBuilder content, string text)
    {
        Unclaimed(content).Append(text);
        _pending.Clear();
        _inCalls = false;
        _passThrough = true;
    }

    /// <summary>The content, with the calls marker put back first if malformed text is the first thing after it.</summary>
    private StringBuilder Unclaimed(StringBuilder content)
    {
        if (_markerUnclaimed) content.Append(CallsBegin);
        _markerUnclaimed = false;
        return content;
    }

    private ToolCall? Call(string inner)
    {
        var sep = inner.IndexOf(Separator, StringComparison.Ordinal);
        if (sep < 0) return null;
        var (head, body) = (inner[..sep], inner[(sep + Separator.Length)..]);
        string name, arguments;
        const string fence = "\n```json\n";
        var fenceAt = body.IndexOf(fence, StringComparison.Ordinal);
        if (head == "function" && fenceAt > 0 && body.EndsWith("\n```", StringComparison.Ordinal) && body.Length >= fenceAt + fence.Length + 4)
        {
            // DeepSeek-V3 and R1: function<｜tool▁sep｜>NAME\n```json\nARGUMENTS\n```
            name = body[..fenceAt];
            arguments = body[(fenceAt + fence.Length)..^4];
        }
        else
        {
            // DeepSeek-V3.1: NAME<｜tool▁sep｜>ARGUMENTS
            name = head;
            arguments = body;
        }
        if (!toolNames.Contains(name) || !IsJsonObject(arguments)) return null;
        return new ToolCall($"call_{Guid.NewGuid():N}"[..29], name, arguments.Trim());
    }

    private static bool IsJsonObject(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The length of the longest tail of <paramref name="text"/> that is a proper prefix of <paramref name="marker"/>.</summary>
    private static int PrefixTail(string text, string marker)
    {
        for (var k = Math.Min(marker.Length - 1, text.Length); k > 0; k--)
            if (string.CompareOrdinal(text, text.Length - k, marker, 0, k) == 0) return k;
        return 0;
    }
}
