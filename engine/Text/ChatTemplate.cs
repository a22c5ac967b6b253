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
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        foreach (var m in messages)
        {
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ChatTemplateException($"message role '{m.Role}' is not supported by the {Name} chat template");
        }
        return _format == ChatFormat.DeepSeekV3 ? ApplyV3(messages, addGenerationPrompt) : ApplyV2(messages, addGenerationPrompt);
    }

    private string ApplyV3(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var system = string.Join("\n\n", messages.Where(m => m.Role == "system").Select(m => m.Content));
        var text = new System.Text.StringBuilder(_bos).Append(system);
        foreach (var m in messages)
        {
            if (m.Role == "user") text.Append("<｜User｜>").Append(m.Content);
            else if (m.Role == "assistant") text.Append("<｜Assistant｜>").Append(m.Content).Append(_eos);
        }
        if (addGenerationPrompt) text.Append("<｜Assistant｜>");
        return text.ToString();
    }

    private string ApplyV2(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var text = new System.Text.StringBuilder(_bos);
        foreach (var m in messages)
        {
            text.Append(m.Role switch
            {
                "user" => $"User: {m.Content}\n\n",
                "assistant" => $"Assistant: {m.Content}{_eos}",
                _ => $"{m.Content}\n\n",
            });
        }
        if (addGenerationPrompt) text.Append("Assistant:");
        return text.ToString();
    }

    private enum ChatFormat
    {
        DeepSeekV3,
        DeepSeekV2,
    }
}
