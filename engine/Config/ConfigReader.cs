using System.Text.Json;

namespace MoeMesh.Engine.Config;

/// <summary>Typed access to config.json keys with errors that name the key.</summary>
internal readonly struct ConfigReader(JsonElement root, string prefix = "")
{
    public JsonElement? Element(string key) =>
        root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string key) => Element(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        _ => throw Wrong(key, "a string"),
    };

    public int? Int(string key) => Element(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v when v.TryGetInt32(out var i) => i,
        // Some configs (eos_token_id) allow a list; the first entry is the primary one.
        { ValueKind: JsonValueKind.Array } v when v.GetArrayLength() > 0 && v[0].TryGetInt32(out var first) => first,
        _ => throw Wrong(key, "an integer"),
    };

    public int RequiredInt(string key) => Int(key) ?? throw new ModelConfigException($"missing key '{prefix}{key}'");

    public double? Double(string key) => Element(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.Number } v => v.GetDouble(),
        _ => throw Wrong(key, "a number"),
    };

    public bool? Bool(string key) => Element(key) switch
    {
        null => null,
        { ValueKind: JsonValueKind.True } => true,
        { ValueKind: JsonValueKind.False } => false,
        _ => throw Wrong(key, "a boolean"),
    };

    private ModelConfigException Wrong(string key, string what) => new($"key '{prefix}{key}' must be {what}");
}
