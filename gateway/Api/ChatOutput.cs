namespace MoeMesh.Gateway.Api;

/// <summary>
/// One choice's output split as the chat API returns it: reasoning (with --reasoning-parser), then the answer's
/// content and tool calls (when the request's tools are parsed). Fed delta by delta for streaming, or whole.
/// </summary>
public sealed class ChatOutput(ReasoningParser? reasoning, ToolsRequest tools)
{
    private readonly ToolCallParser? _calls = tools.Parse ? new ToolCallParser(tools.Names) : null;

    /// <summary>The calls returned so far (with parallel_tool_calls false, at most one).</summary>
    public int CallCount { get; private set; }

    public (string Reasoning, string Content, List<ToolCall> Calls) Feed(string delta, bool final)
    {
        var (thought, answer) = reasoning is null ? ("", delta) : reasoning.Feed(delta, final);
        if (_calls is null) return (thought, answer, []);
        var (content, calls) = _calls.Feed(answer, final);
        if (!tools.Parallel) calls = calls.Take(Math.Max(0, 1 - CallCount)).ToList();
        CallCount += calls.Count;
        return (thought, content, calls);
    }

    /// <summary>finish_reason: "tool_calls" where the output ended as the model chose and made calls.</summary>
    public string? FinishReason(string? reason) => reason == "stop" && CallCount > 0 ? "tool_calls" : reason;
}
