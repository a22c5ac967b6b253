using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Testing;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>
/// --chat-template with DeepSeek-V3.1's template, and the request fields that reach a template: chat_template_kwargs
/// (its thinking switch), add_generation_prompt and continue_final_message. The prompt is what Hugging Face's Jinja
/// renders, encoded.
/// </summary>
public sealed class ChatTemplateOptionTests : IAsyncLifetime
{
    private const string Bos = "<｜begin▁of▁sentence｜>";
    private const string Eos = "<｜end▁of▁sentence｜>";
    private GatewayServer _server = null!;

    public async Task InitializeAsync() =>
        _server = await GatewayServer.StartAsync(
            "--chat-template", Path.Combine(NodeOracle.Dir, "templates", "deepseek-v3.1.jinja"), "--reasoning-parser", "deepseek_r1");

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Theory]
    [InlineData("""{"thinking": true}""", true, false)]
    [InlineData("""{"thinking": false}""", true, false)]
    [InlineData("{}", true, false)]
    [InlineData("{}", false, false)]
    [InlineData("""{"thinking": true}""", false, true)]
    public async Task Prompt_IsHuggingFacesRendering(string kwargs, bool addGenerationPrompt, bool continueFinal)
    {
        var messages = continueFinal
            ? """[{"role": "user", "content": "Tell a story."}, {"role": "assistant", "content": "Once upon", "prefix": true}]"""
            : """[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]""";
        var variables = JsonNode.Parse(kwargs)!.AsObject();
        variables["messages"] = JsonNode.Parse(messages);
        variables["add_generation_prompt"] = addGenerationPrompt;
        variables["bos_token"] = Bos;
        variables["eos_token"] = Eos;
        variables["tools"] = null;
        var text = TemplateOracle.Render([(TemplateOracle.Fixture("deepseek-v3.1.jinja"), variables)])[0].Text!;
        if (continueFinal) text = text[..(text.LastIndexOf("Once upon", StringComparison.Ordinal) + "Once upon".Length)];
        var expected = await Ids(new { prompt = text, add_special_tokens = false });

        var request = new JsonObject
        {
            ["messages"] = JsonNode.Parse(messages),
            ["chat_template_kwargs"] = JsonNode.Parse(kwargs),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["continue_final_message"] = continueFinal,
        };
        Assert.Equal(expected, await Ids(request));
        request["max_tokens"] = 1;
        var chat = await _server.PostJsonAsync("/v1/chat/completions", request);
        Assert.Equal(expected.Length, chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    /// <summary>
    /// With thinking off the template ends the prompt with "&lt;/think&gt;", so the reasoning parser returns the whole
    /// output as content; with thinking on, the demo model's output (no "&lt;/think&gt;") is all reasoning.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReasoningParser_FollowsTheThinkingSwitch(bool thinking)
    {
        var request = new { messages = new[] { new { role = "user", content = "Hi" } }, chat_template_kwargs = new { thinking }, max_tokens = 6, ignore_eos = true, temperature = 0 };
        var message = (await _server.PostJsonAsync("/v1/chat/completions", request)).GetProperty("choices")[0].GetProperty("message");
        var (answer, reasoning) = (message.GetProperty("content"), message.GetProperty("reasoning_content"));
        Assert.Equal(thinking ? JsonValueKind.Null : JsonValueKind.String, answer.ValueKind);
        Assert.Equal(thinking ? JsonValueKind.String : JsonValueKind.Null, reasoning.ValueKind);
    }

    /// <summary>A constrained output is the answer even where the prompt opened a reasoning block: the grammar leaves no room for one.</summary>
    [Fact]
    public async Task ConstrainedOutput_IsContentEvenWithThinkingOn()
    {
        var request = new
        {
            messages = new[] { new { role = "user", content = "Hi" } }, chat_template_kwargs = new { thinking = true },
            response_format = new { type = "json_object" }, max_tokens = 1000, temperature = 0,
        };
        var message = (await _server.PostJsonAsync("/v1/chat/completions", request)).GetProperty("choices")[0].GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("reasoning_content").ValueKind);
        using var doc = JsonDocument.Parse(message.GetProperty("content").GetString()!);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public async Task ThinkingSwitch_ChangesThePrompt()
    {
        var on = await Ids(new { messages = new[] { new { role = "user", content = "Hi" } }, chat_template_kwargs = new { thinking = true } });
        var off = await Ids(new { messages = new[] { new { role = "user", content = "Hi" } }, chat_template_kwargs = new { thinking = false } });
        Assert.NotEqual(on, off);
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"messages":[]}}""", "chat_template_kwargs")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":[1]}""", "chat_template_kwargs")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"continue_final_message":true}""", "continue_final_message")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"x"}],"continue_final_message":true,"add_generation_prompt":true}""", "continue_final_message")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi","tool_calls":[]}]}""", "messages")]
    [InlineData("""{"messages":[{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":{}}}]}]}""", "messages")]
    [InlineData("""{"messages":[{"role":"assistant","content":"x","prefix":"yes"}]}""", "messages")]
    [InlineData("""{"messages":[{"role":"wizard","content":"x"}]}""", "messages")]
    public async Task BadTemplateInput_Is400NamingTheField(string json, string param)
    {
        foreach (var path in new[] { "/tokenize", "/v1/chat/completions" })
        {
            var response = await _server.Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{path}: {text}");
            Assert.Equal(param, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
        }
    }

    /// <summary>Tools reach the template with tool_choice auto (the default) and not with none.</summary>
    [Fact]
    public async Task ToolChoiceNone_KeepsTheToolsOutOfThePrompt()
    {
        var file = Path.Combine(Directory.CreateTempSubdirectory("moemesh-template-").FullName, "tools.jinja");
        await File.WriteAllTextAsync(file, "{% if tools %}{% for t in tools %}{{ t.function.name | upper }} {% endfor %}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}");
        await using var server = await GatewayServer.StartAsync("--chat-template", file);
        async Task<int> PromptTokens(string? choice) => (await server.PostJsonAsync("/v1/chat/completions", new Dictionary<string, object?>
        {
            ["messages"] = new[] { new { role = "user", content = "Hi" } },
            ["tools"] = new[] { new { type = "function", function = new { name = "lookup_the_weather_somewhere" } } },
            ["tool_choice"] = choice,
            ["max_tokens"] = 1,
        })).GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        var plain = (await server.PostJsonAsync("/tokenize", new { prompt = "Hi", add_special_tokens = false })).GetProperty("count").GetInt32();
        Assert.Equal(plain, await PromptTokens("none"));
        Assert.True(await PromptTokens("auto") > plain + 3);
        Assert.Equal(await PromptTokens("auto"), await PromptTokens(null));
        File.Delete(file);
    }

    [Fact]
    public async Task UnusableTemplateFile_StopsTheGatewayNamingTheOption()
    {
        var file = Path.Combine(Directory.CreateTempSubdirectory("moemesh-template-").FullName, "bad.jinja");
        await File.WriteAllTextAsync(file, "{% for m in messages %}");
        var (exit, _, stderr) = await Programs.RunAsync(Programs.Dll("gateway", "moemesh-gateway"), ["--model", GatewayServer.ModelDir, "--chat-template", file]);
        Assert.Equal(2, exit);
        Assert.Contains("--chat-template", stderr);
        File.Delete(file);
    }

    private async Task<int[]> Ids(object request) =>
        (await _server.PostJsonAsync("/tokenize", request)).GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
}
