using System.Text.Json;

namespace MoeMesh.Engine.Text;

/// <summary>The parts of tokenizer_config.json the server uses: special tokens and the chat template.</summary>
public sealed record TokenizerConfig(string? BosToken, string? EosToken, bool AddBosToken, string? ChatTemplate)
{
    public static TokenizerConfig Load(string path)
    {
        if (!File.Exists(path)) return new TokenizerConfig(null, null, true, null);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        return new TokenizerConfig(
            TokenText(root, "bos_token"),
            TokenText(root, "eos_token"),
            !root.TryGetProperty("add_bos_token", out var add) || add.ValueKind != JsonValueKind.False,
            root.TryGetProperty("chat_template", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null);
    }

    private static string? TokenText(JsonElement root, string key) =>
        !root.TryGetProperty(key, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString()
        : null;
}
