using System.Text.Json;
using MoeMesh.Engine.Text.Jinja;

namespace MoeMesh.Engine.Text;

/// <summary>
/// The model's chat template (the Jinja chat_template of tokenizer_config.json), rendered as Hugging Face renders it,
/// with the variables it passes: messages, tools, add_generation_prompt, bos_token, eos_token and extra keyword
/// arguments such as a thinking switch.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>Variables the server sets; extra arguments cannot replace them.</summary>
    public static readonly IReadOnlySet<string> ReservedNames =
        new HashSet<string>(["messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "raise_exception", "strftime_now", "namespace", "range"]);

    private readonly JinjaTemplate _template;
    private readonly string _bos;
    private readonly string _eos;
    private readonly Func<DateTimeOffset> _clock;

    private ChatTemplate(JinjaTemplate template, string bos, string eos, Func<DateTimeOffset> clock)
    {
        _template = template;
        _bos = bos;
        _eos = eos;
        _clock = clock;
    }

    /// <summary>Parses the template; throws <see cref="ChatTemplateException"/> for a missing or unparsable one.</summary>
    public static ChatTemplate FromJinja(string? template, string bos, string eos, Func<DateTimeOffset>? clock = null)
    {
        if (string.IsNullOrWhiteSpace(template))
            throw new ChatTemplateException("the model's tokenizer_config.json has no chat_template");
        try
        {
            return new ChatTemplate(JinjaTemplate.Parse(template), bos, eos, clock ?? (() => DateTimeOffset.UtcNow));
        }
        catch (JinjaException e)
        {
            throw new ChatTemplateException($"the model's chat_template cannot be used: {e.Message}");
        }
    }

    /// <summary>Renders the conversation, ending with the assistant prompt when <paramref name="addGenerationPrompt"/>.</summary>
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true) => Render(messages, addGenerationPrompt).Text;

    /// <summary>
    /// Renders the conversation and says which parts of the text came from the request (message text, tool
    /// definitions) as opposed to the template's own text.
    /// </summary>
    /// <exception cref="ChatTemplateException">The template refused the conversation (raise_exception) or failed on it.</exception>
    public RenderedChat Render(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt = true,
        JsonElement? tools = null,
        IReadOnlyDictionary<string, JsonElement>? extra = null)
    {
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in extra ?? new Dictionary<string, JsonElement>())
        {
            if (ReservedNames.Contains(name)) throw new ChatTemplateException($"the template argument '{name}' is set by the server");
            variables[name] = JinjaValues.FromJson(value);
        }
        variables["messages"] = messages.Select(m => (object?)Message(m)).ToList();
        variables["tools"] = tools is { ValueKind: not JsonValueKind.Null } t ? JinjaValues.FromJson(t) : null;
        variables["add_generation_prompt"] = addGenerationPrompt;
        variables["bos_token"] = JinjaString.Template(_bos);
        variables["eos_token"] = JinjaString.Template(_eos);
        try
        {
            var rendered = _template.Render(variables, _clock());
            return new RenderedChat(rendered.Text, rendered.Content);
        }
        catch (RaisedException e)
        {
            throw new ChatTemplateException($"the chat template refused the conversation: {e.Message}");
        }
        catch (JinjaException e)
        {
            throw new ChatTemplateException($"the chat template failed on this conversation: {e.Message}");
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException or InvalidCastException
                                      or KeyNotFoundException or FormatException or OverflowException)
        {
            // A case the engine does not handle: still the template's failure on this input, not the server's.
            throw new ChatTemplateException($"the chat template failed on this conversation ({e.GetType().Name}: {e.Message})");
        }
    }

    private static OrderedDictionary<string, object?> Message(ChatMessage m)
    {
        var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["role"] = JinjaString.Data(m.Role),
            ["content"] = m.Content is null ? null : JinjaString.Data(m.Content),
        };
        foreach (var (name, value) in m.Fields ?? new Dictionary<string, JsonElement>()) dict[name] = JinjaValues.FromJson(value);
        return dict;
    }
}
