using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Engine.Demo;
using MoeMesh.Testing;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>
/// A gateway over a small random-weight checkpoint that carries DeepSeek-V3's real tokenizer files (its vocabulary of
/// 129,280 ids): what it counts, tokenizes, generates and streams agrees with Hugging Face's tokenizers library.
/// </summary>
public sealed class RealTokenizerTests(RealTokenizerTests.Checkpoint checkpoint) : IClassFixture<RealTokenizerTests.Checkpoint>
{
    /// <summary>The checkpoint, written for this test class and removed after it, and one gateway serving it.</summary>
    public sealed class Checkpoint : IAsyncLifetime
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("moemesh-real-v3-tokenizer-").FullName;

        public GatewayServer Server { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            DemoModel.Write(_dir, DemoShape.Tiny with { Vocab = 129280 }, seed: 9);
            var files = Path.GetDirectoryName(TokenizerOracle.DeepSeekV3Tokenizer)!;
            foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(files, name), Path.Combine(_dir, name), overwrite: true);
            // DeepSeek-V3's own beginning and end of sequence ids.
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "config.json")))!.AsObject();
            (config["bos_token_id"], config["eos_token_id"]) = (0, 1);
            File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJsonString());
            Server = await GatewayServer.StartForAsync(_dir);
        }

        public async Task DisposeAsync()
        {
            await Server.DisposeAsync();
            Directory.Delete(_dir, recursive: true);
        }
    }

    private GatewayServer Gateway => checkpoint.Server;

    private static readonly string[] Texts =
    [
        " 😀 😀😀 ",
        "Let 𝑥 + 𝑦 = 𝑧, 中文字符 and CJK extension B 𠀀𠀁.",
        "def f(x):\n    return x ** 2  # 12345\n",
        "Flags 🇫🇷🇯🇵 and a family 👨‍👩‍👧‍👦, ünïcödé, Ελληνικά.",
    ];

    /// <summary>/tokenize and completions' prompt count give the oracle's ids, the beginning-of-sequence token first (add_bos_token).</summary>
    [Fact]
    public async Task Prompts_TokenizeAndCountAsHuggingFace()
    {
        var oracle = TokenizerOracle.Run(TokenizerOracle.DeepSeekV3Tokenizer, Texts);
        for (var i = 0; i < Texts.Length; i++)
        {
            var body = await Gateway.PostJsonAsync("/tokenize", new { prompt = Texts[i] });
            Assert.Equal([0, .. oracle.Ids[i]], body.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()));
            var plain = await Gateway.PostJsonAsync("/tokenize", new { prompt = Texts[i], add_special_tokens = false });
            Assert.Equal(oracle.Ids[i], plain.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()));
            var completion = await Gateway.PostJsonAsync("/v1/completions", new { prompt = Texts[i], max_tokens = 1 });
            Assert.Equal(oracle.Ids[i].Length + 1, completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
            var back = await Gateway.PostJsonAsync("/detokenize", new { tokens = oracle.Ids[i] });
            Assert.Equal(Texts[i], back.GetProperty("prompt").GetString());
        }
    }

    /// <summary>
    /// Generated text, whole and streamed, is the oracle's decoding of the generated ids (random weights emit tokens
    /// that hold parts of characters and special tokens, which the text skips).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GeneratedText_IsHuggingFacesDecodingOfTheIds(bool stream)
    {
        object Request() => new
        {
            prompt = Texts[1], max_tokens = 24, temperature = 1.0, seed = 11, ignore_eos = true, logprobs = 0, return_tokens_as_token_ids = true, stream,
        };
        var choices = stream
            ? (await Gateway.PostStreamAsync("/v1/completions", Request())).Select(c => c.GetProperty("choices")[0]).ToList()
            : [(await Gateway.PostJsonAsync("/v1/completions", Request())).GetProperty("choices")[0]];
        var text = string.Concat(choices.Select(c => c.GetProperty("text").GetString()));
        var ids = choices.Where(c => c.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => int.Parse(t.GetString()!["token_id:".Length..])))
            .ToArray();
        Assert.Equal(24, ids.Length);
        var oracle = TokenizerOracle.Run(TokenizerOracle.DeepSeekV3Tokenizer, [], [ids]);
        Assert.Equal(oracle.Decoded[0], text);
    }

    /// <summary>
    /// A conversation with a system prompt, a tool call and its result: /tokenize and the chat completion's prompt count
    /// give the ids of Hugging Face's pipeline (the checkpoint's template rendered by @huggingface/jinja, then encoded
    /// by tokenizers).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Chat_RendersAndTokenizesAsHuggingFace(bool addGenerationPrompt)
    {
        const string messages = """
            [{"role": "system", "content": "You answer with emoji 😀."},
             {"role": "user", "content": "Weather in 𝑥-town?"},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"x\"}"}}]},
             {"role": "tool", "tool_call_id": "c1", "content": "21°C, 晴"},
             {"role": "assistant", "content": "21°C ☀️"},
             {"role": "user", "content": "Thanks!"}]
            """;
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Path.GetDirectoryName(TokenizerOracle.DeepSeekV3Tokenizer)!, "tokenizer_config.json")))!;
        var variables = new JsonObject
        {
            ["messages"] = JsonNode.Parse(messages),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = config["bos_token"]!["content"]!.GetValue<string>(),
            ["eos_token"] = config["eos_token"]!["content"]!.GetValue<string>(),
            ["tools"] = null,
        };
        var rendered = TemplateOracle.Render([(config["chat_template"]!.GetValue<string>(), variables)])[0].Text!;
        var expected = TokenizerOracle.Run(TokenizerOracle.DeepSeekV3Tokenizer, [rendered]).Ids[0];

        var request = new JsonObject { ["messages"] = JsonNode.Parse(messages), ["add_generation_prompt"] = addGenerationPrompt };
        var body = await Gateway.PostJsonAsync("/tokenize", request);
        Assert.Equal(expected, body.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()));
        request["max_tokens"] = 1;
        var chat = await Gateway.PostJsonAsync("/v1/chat/completions", request);
        Assert.Equal(expected.Length, chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }
}
