using System.Text.Json;

namespace MoeMesh.Engine.Text;

/// <summary>
/// One chat turn as the template sees it: role, text (null for an assistant turn that only calls tools) and the
/// message's other fields (tool_calls, tool_call_id, name, reasoning_content, prefix) as the request gave them.
/// </summary>
public sealed record ChatMessage(string Role, string? Content, IReadOnlyDictionary<string, JsonElement>? Fields = null);
