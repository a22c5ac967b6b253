namespace MoeMesh.Engine.Text;

/// <summary>
/// The DeepSeek chat formats, recognised from the Jinja chat_template in tokenizer_config.json.
/// A template of another shape is refused with a clear error rather than guessed at.
/// </summary>
public sealed class ChatTemplate
{
    private readonly ChatFormat _format;
    private readonly string _bos;
    private readonly string _eos;

    private ChatTemplate(ChatFormat format, string bos, string eos)
    {
        _format = format;
        _bos = bos;
        _eos = eos;
    }

    public string Name => _format.ToString();

    /// <summary>Recognises the template; throws <see cref="ChatTemplateException"/> for one it cannot apply.</summary>
    public static ChatTemplate FromJinja(string? template, string bos, string eos)
    {
        if (string.IsNullOrWhiteSpace(template))
            throw new ChatTemplateException("the model's tokenizer_config.json has no chat_template");
        if (template.Contains("<｜User｜>") && template.Contains("<｜Assistant｜>"))
            return new ChatTemplate(ChatFormat.DeepSeekV3, bos, eos);
        if (template.Contains("'User: '") && template.Contains("'Assistant: '"))
            return new ChatTemplate(ChatFormat.DeepSeekV2, bos, eos);
        throw new ChatTemplateException("the model's chat_template is not one of the supported DeepSeek-V3 or DeepSeek-V2 formats");
    }

    /// <summary>Renders the conversation, ending with the assistant prompt when <paramref name="addGenerationPrompt"/>.</summary>
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true) => Render(messages, addGenerationPrompt).Text;

    /// <summary>Renders the conversation and says which parts of the text are message content (as opposed to the template's own).</summary>
    public RenderedChat Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        foreach (var m in messages)
        {
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ChatTemplateException($"message role '{m.Role}' is not supported by the {Name} chat template");
        }
        var text = new Builder(_bos);
        if (_format == ChatFormat.DeepSeekV3) RenderV3(text, messages, addGenerationPrompt);
        else RenderV2(text, messages, addGenerationPrompt);
        return new RenderedChat(text.Text.ToString(), text.Spans);
    }

    private void RenderV3(Builder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var first = true;
        foreach (var m in messages.Where(m => m.Role == "system"))
        {
            if (!first) text.Template("\n\n");
            text.Content(m.Content);
            first = false;
        }
        foreach (var m in messages)
        {
            if (m.Role == "user") text.Template("<｜User｜>").Content(m.Content);
            else if (m.Role == "assistant") text.Template("<｜Assistant｜>").Content(m.Content).Template(_eos);
        }
        if (addGenerationPrompt) text.Template("<｜Assistant｜>");
    }

    private void RenderV2(Builder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        foreach (var m in messages)
        {
            _ = m.Role switch
            {
                "user" => text.Template("User: ").Content(m.Content).Template("\n\n"),
                "assistant" => text.Template("Assistant: ").Content(m.Content).Template(_eos),
                _ => text.Content(m.Content).Template("\n\n"),
            };
        }
        if (addGenerationPrompt) text.Template("Assistant:");
    }

    /// <summary>The rendered text and where the message content lies in it.</summary>
    private sealed class Builder(string start)
    {
        public System.Text.StringBuilder Text { get; } = new(start);
        public List<(int Start, int Length)> Spans { get; } = [];

        public Builder Template(string s)
        {
            Text.Append(s);
            return this;
        }

        public Builder Content(string s)
        {
            if (s.Length > 0) Spans.Add((Text.Length, s.Length));
            Text.Append(s);
            return this;
        }
    }

    private enum ChatFormat
    {
        DeepSeekV3,
        DeepSeekV2,
    }
}
