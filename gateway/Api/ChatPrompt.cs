using System.Text.Json;
using MoeMesh.Engine.Text;
using MoeMesh.Gateway.Hosting;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// A chat request's messages rendered with the model's chat template and encoded: the prompt the model sees. The
/// template gets what Hugging Face passes: the messages with their tool calls and results, tools, add_generation_prompt
/// and the request's chat_template_kwargs (such as DeepSeek-V3.1's "thinking").
/// </summary>
internal static class ChatPrompt
{
    public const int MaxTemplateArguments = 32;

    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];

    /// <summary>The prompt's ids, and whether the template closed the reasoning block in it (the output is all answer).</summary>
    public sealed record Encoded(List<int> Ids, bool ReasoningClosed);

    /// <summary>
    /// Renders and encodes the request's messages; <paramref name="tools"/> says which tool definitions the template
    /// gets (chat completions: none for tool_choice "none"); without it (/tokenize), the request's.
    /// </summary>
    public static Encoded Encode(RequestReader r, ModelHost host, ToolsRequest? tools = null)
    {
        var chat = Render(r, host, tools is not null ? tools.Tools : r.Get("tools") is { ValueKind: JsonValueKind.Array } t ? t : null);
        // What the messages say is text: special-token text inside them cannot open or close a turn.
        var ids = Endpoints.Encode(host, chat.Text, "messages", host.SpecialTokensInContent ? null : chat.Content);
        return new Encoded(ids, ReasoningParser.ClosedBy(chat.Text));
    }

    private static RenderedChat Render(RequestReader r, ModelHost host, JsonElement? tools)
    {
        var messages = ParseMessages(r);
        var addGenerationPrompt = r.Bool("add_generation_prompt") ?? true;
        var continueFinal = r.Bool("continue_final_message") ?? false;
        if (continueFinal && addGenerationPrompt && r.Get("add_generation_prompt") is not null)
            throw ApiException.BadRequest("'continue_final_message' and 'add_generation_prompt' cannot both be true", "continue_final_message");
        if (continueFinal && messages[^1].Role != "assistant")
            throw ApiException.BadRequest("'continue_final_message' needs the last message to be the assistant's", "continue_final_message");
        RenderedChat chat;
        try
        {
            chat = host.ChatTemplate().Render(messages, addGenerationPrompt && !continueFinal, tools, TemplateArguments(r));
        }
        catch (ChatTemplateException e)
        {
            throw ApiException.BadRequest(e.Message, "messages");
        }
        return continueFinal ? OpenFinalMessage(chat, messages[^1].Content ?? "") : chat;
    }

    /// <summary>The rendered text cut after the last message's content, so that the model continues it (vLLM's continue_final_message).</summary>
    private static RenderedChat OpenFinalMessage(RenderedChat chat, string content)
    {
        // As Hugging Face does it: the last occurrence of the content without its surrounding whitespace (templates trim).
        content = content.Trim();
        var at = content.Length == 0 ? -1 : chat.Text.LastIndexOf(content, StringComparison.Ordinal);
        if (at < 0) throw ApiException.BadRequest("the chat template does not write the final message's content as given, so it cannot be continued", "continue_final_message");
        var end = at + content.Length;
        var spans = chat.Content.Where(s => s.Start < end).Select(s => (s.Start, Math.Min(s.Length, end - s.Start))).ToList();
        return new RenderedChat(chat.Text[..end], spans);
    }

    /// <summary>chat_template_kwargs: extra variables for the template, at most <see cref="MaxTemplateArguments"/>.</summary>
    private static Dictionary<string, JsonElement>? TemplateArguments(RequestReader r)
    {
        if (r.Get("chat_template_kwargs") is not { } kwargs || kwargs.ValueKind == JsonValueKind.Null) return null;
        if (kwargs.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("'chat_template_kwargs' must be an object", "chat_template_kwargs");
        var arguments = kwargs.EnumerateObject().ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
        if (arguments.Count > MaxTemplateArguments)
            throw ApiException.BadRequest($"'chat_template_kwargs' has more than {MaxTemplateArguments} entries", "chat_template_kwargs");
        if (arguments.Keys.FirstOrDefault(ChatTemplate.ReservedNames.Contains) is { } reserved)
            throw ApiException.BadRequest($"'chat_template_kwargs' cannot set '{reserved}': the server sets it", "chat_template_kwargs");
        return arguments;
    }

    private static List<ChatMessage> ParseMessages(RequestReader r)
    {
        if (r.Get("messages") is not { ValueKind: JsonValueKind.Array } array)
            throw ApiException.BadRequest("'messages' must be a list of messages", "messages");
        var messages = new List<ChatMessage>();
        foreach (var m in array.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var roleField) || roleField.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest("each message needs a string 'role'", "messages");
            var role = roleField.GetString()!;
            if (!Roles.Contains(role))
                throw ApiException.BadRequest($"message role '{role}' is not one of system, developer, user, assistant, tool", "messages");
            var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var field in m.EnumerateObject())
            {
                if (field.Name is "role" or "content" || field.Value.ValueKind == JsonValueKind.Null) continue;
                CheckField(field, role);
                fields[field.Name] = field.Value;
            }
            var content = Content(m);
            // OpenAI's developer messages are the system prompt of newer models; the family's templates know "system".
            messages.Add(new ChatMessage(role == "developer" ? "system" : role, content ?? (role == "assistant" ? null : ""), fields));
        }
        if (messages.Count == 0) throw ApiException.BadRequest("'messages' is empty", "messages");
        return messages;
    }

    private static void CheckField(JsonProperty field, string role)
    {
        var ok = field.Name switch
        {
            "name" or "tool_call_id" or "reasoning_content" => field.Value.ValueKind == JsonValueKind.String,
            "prefix" => field.Value.ValueKind is JsonValueKind.True or JsonValueKind.False && role == "assistant",
            "tool_calls" => role == "assistant" && field.Value.ValueKind == JsonValueKind.Array && field.Value.EnumerateArray().All(IsToolCall),
            _ => throw new ApiException(400, $"message field '{field.Name}' is not supported by this server", "messages", code: "unsupported_parameter"),
        };
        if (!ok)
            throw ApiException.BadRequest(field.Name switch
            {
                "tool_calls" => "'tool_calls' belongs to assistant messages: a list of {\"type\": \"function\", \"function\": {\"name\": string, \"arguments\": string}}",
                "prefix" => "'prefix' belongs to assistant messages and is a boolean",
                _ => $"message field '{field.Name}' must be a string",
            }, "messages");
    }

    private static bool IsToolCall(JsonElement call) =>
        call.ValueKind == JsonValueKind.Object
        && (!call.TryGetProperty("type", out var type) || type.ValueKind == JsonValueKind.String && type.GetString() == "function")
        && (!call.TryGetProperty("id", out var id) || id.ValueKind == JsonValueKind.String)
        && call.TryGetProperty("function", out var f) && f.ValueKind == JsonValueKind.Object
        && f.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
        && f.TryGetProperty("arguments", out var arguments) && arguments.ValueKind == JsonValueKind.String;

    /// <summary>The message's text: a string, or its text parts joined; null where the message has none.</summary>
    private static string? Content(JsonElement message)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return null;
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind == JsonValueKind.Array)
        {
            var parts = new List<string>();
            foreach (var part in c.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String || t.GetString() != "text"
                    || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                    throw ApiException.BadRequest("only text content parts are supported", "messages");
                parts.Add(text.GetString()!);
            }
            return string.Concat(parts);
        }
        throw ApiException.BadRequest("message 'content' must be a string or a list of text parts", "messages");
    }
}
