using System.Collections.Frozen;
using System.Text.Json;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// The request fields an endpoint implements, and the OpenAI or vLLM fields it does not implement but accepts
/// at the value that changes nothing (a client library may send them at their defaults).
/// </summary>
public sealed record RequestFields(FrozenSet<string> Supported, FrozenDictionary<string, InertField> Inert)
{
    private static readonly string[] Sampling =
    [
        "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed", "user",
        "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
        // vLLM extensions.
        "top_k", "ignore_eos", "stop_token_ids", "repetition_penalty", "return_tokens_as_token_ids", "response_format", "guided_choice", "guided_regex",
    ];

    private static readonly Dictionary<string, InertField> Common = new()
    {
        ["min_tokens"] = InertField.Number(0),
        ["min_p"] = InertField.Number(0),
        ["skip_special_tokens"] = InertField.Bool(true),
        ["spaces_between_special_tokens"] = InertField.Bool(true),
        ["include_stop_str_in_output"] = InertField.Bool(false),
        ["priority"] = InertField.Number(0),
        ["store"] = InertField.Bool(false),
        ["metadata"] = new("an object (it is not stored)", v => v.ValueKind == JsonValueKind.Object),
        ["service_tier"] = new("\"auto\" or \"default\"", v => v.ValueKind == JsonValueKind.String && v.GetString() is "auto" or "default"),
    };

    /// <summary>What a chat request gives the chat template (vLLM's fields besides OpenAI's messages).</summary>
    private static readonly string[] ChatTemplateFields = ["messages", "add_generation_prompt", "continue_final_message", "chat_template_kwargs"];

    /// <summary>best_of is checked by the endpoint: it is accepted when equal to 1 or n.</summary>
    public static RequestFields Completions { get; } = Build([.. Sampling, "prompt", "echo", "best_of"], new()
    {
        ["suffix"] = new("null or \"\"", v => v.ValueKind == JsonValueKind.String && v.GetString() == ""),
    });

    public static RequestFields Chat { get; } = Build([.. Sampling, .. ChatTemplateFields, "tools", "tool_choice", "parallel_tool_calls", "max_completion_tokens", "top_logprobs"], new()
    {
        ["functions"] = new("an empty list", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0),
        ["function_call"] = new("\"none\" or \"auto\"", v => v.ValueKind == JsonValueKind.String && v.GetString() is "none" or "auto"),
        ["modalities"] = new("[\"text\"]", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 1 && v[0].ValueKind == JsonValueKind.String && v[0].GetString() == "text"),
        ["echo"] = InertField.Bool(false),
    });

    /// <summary>/tokenize with a prompt (vLLM's fields).</summary>
    public static RequestFields TokenizePrompt { get; } = Only(["model", "prompt", "add_special_tokens", "return_token_strs"], []);

    /// <summary>/tokenize with messages: the template writes the special tokens and the generation prompt.</summary>
    public static RequestFields TokenizeChat { get; } = Only(["model", .. ChatTemplateFields, "tools", "return_token_strs"], new()
    {
        ["add_special_tokens"] = InertField.Bool(false),
    });

    public static RequestFields Detokenize { get; } = Only(["model", "tokens"], []);

    private static RequestFields Only(string[] supported, Dictionary<string, InertField> inert) =>
        new(supported.ToFrozenSet(StringComparer.Ordinal), inert.ToFrozenDictionary(StringComparer.Ordinal));

    private static RequestFields Build(string[] supported, Dictionary<string, InertField> inert)
    {
        foreach (var (name, rule) in Common) inert.TryAdd(name, rule);
        return new RequestFields(supported.ToFrozenSet(StringComparer.Ordinal), inert.ToFrozenDictionary(StringComparer.Ordinal));
    }
}

/// <summary>An unimplemented field, accepted only at the value described by <see cref="Accepted"/>.</summary>
public sealed record InertField(string Accepted, Func<JsonElement, bool> Holds)
{
    public static InertField Number(double value) =>
        new(value.ToString(System.Globalization.CultureInfo.InvariantCulture), v => v.ValueKind == JsonValueKind.Number && v.GetDouble() == value);

    public static InertField Bool(bool value) =>
        new(value ? "true" : "false", v => v.ValueKind == (value ? JsonValueKind.True : JsonValueKind.False));
}
