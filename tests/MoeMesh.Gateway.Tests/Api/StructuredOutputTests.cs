using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using MoeMesh.Testing;
using OpenAI;
using OpenAI.Chat;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>
/// response_format json_object on the random-weight demo model, whose unconstrained output is noise: every output is
/// a JSON object, greedy and sampled, whole and streamed, several choices, in-process and with expert nodes.
/// </summary>
public sealed class StructuredOutputTests : IAsyncLifetime
{
    private GatewayServer _server = null!;

    // A nudge towards the quote and the closing brace, which the random model otherwise picks rarely, so that its
    // strings and objects end within the token budget; the mask alone still decides what is valid where.
    private Dictionary<string, int> _nudge = [];

    public async Task InitializeAsync()
    {
        _server = await GatewayServer.StartAsync();
        foreach (var text in new[] { "\"", "}" })
        {
            var ids = (await _server.PostJsonAsync("/tokenize", new { prompt = text, add_special_tokens = false })).GetProperty("tokens");
            _nudge[ids[0].GetInt32().ToString()] = 4;
        }
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private object Request(double temperature, int n, bool stream, int maxTokens = 600) => new
    {
        messages = new[] { new { role = "user", content = "Describe a cat as JSON." } },
        response_format = new { type = "json_object" },
        max_tokens = maxTokens, temperature, n, stream, seed = 5, logit_bias = _nudge,
    };

    [Theory]
    [InlineData(0.0, 1, false)]
    [InlineData(0.0, 1, true)]
    [InlineData(1.0, 4, false)]
    [InlineData(1.0, 4, true)]
    public async Task EveryOutput_IsAJsonObject(double temperature, int n, bool stream)
    {
        var outputs = stream ? await Streamed(Request(temperature, n, true)) : Whole(await _server.PostJsonAsync("/v1/chat/completions", Request(temperature, n, false)));
        Assert.Equal(n, outputs.Count);
        foreach (var (content, finish) in outputs)
        {
            Assert.Equal("stop", finish);
            using var doc = JsonDocument.Parse(content);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
    }

    /// <summary>Cut off by max_tokens inside the object: finish_reason "length", and the text so far is the object's beginning.</summary>
    [Fact]
    public async Task MaxTokensMidObject_EndsWithLength()
    {
        var request = new { messages = new[] { new { role = "user", content = "JSON" } }, response_format = new { type = "json_object" }, max_tokens = 2, temperature = 0 };
        var (content, finish) = Whole(await _server.PostJsonAsync("/v1/chat/completions", request))[0];
        Assert.Equal("length", finish);
        Assert.StartsWith("{", content);
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(content));
    }

    /// <summary>Log-probabilities stay the raw distribution's: the first token's alternatives are those of an unconstrained request.</summary>
    [Fact]
    public async Task Logprobs_AreTheRawDistributions()
    {
        object Ask(bool json) => json
            ? new { messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 1, temperature = 0, logprobs = true, top_logprobs = 5, response_format = new { type = "json_object" } }
            : new { messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 1, temperature = 0, logprobs = true, top_logprobs = 5 };
        static string Top(JsonElement body) => body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content")[0].GetProperty("top_logprobs").GetRawText();
        var constrained = await _server.PostJsonAsync("/v1/chat/completions", Ask(true));
        var free = await _server.PostJsonAsync("/v1/chat/completions", Ask(false));
        Assert.Equal(Top(free), Top(constrained));
        Assert.Equal("{", constrained.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task Completions_TakeResponseFormatToo()
    {
        var body = await _server.PostJsonAsync("/v1/completions", new { prompt = "JSON:", max_tokens = 600, temperature = 0, response_format = new { type = "json_object" }, logit_bias = _nudge });
        using var doc = JsonDocument.Parse(body.GetProperty("choices")[0].GetProperty("text").GetString()!);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public async Task OpenAiClient_JsonObject()
    {
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.BaseAddress, "/v1") }).GetChatClient("demo");
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 600, Temperature = 0, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        foreach (var (id, bias) in _nudge) options.LogitBiases[int.Parse(id)] = bias;
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("A cat as JSON")], options);
        using var doc = JsonDocument.Parse(completion.Content[0].Text);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Theory]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}""")]
    [InlineData("""{"type":"yaml"}""")]
    [InlineData("""{"type":"json_object","schema":{}}""")]
    [InlineData("""["json_object"]""")]
    public async Task UnsupportedResponseFormat_Is400NamingIt(string format)
    {
        var json = $$"""{"messages":[{"role":"user","content":"Hi"}],"response_format":{{format}}}""";
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("response_format", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>vLLM's guided_choice: every output is one of the choices, greedy and sampled, whole and streamed.</summary>
    [Theory]
    [InlineData(0.0, 1, false)]
    [InlineData(1.0, 4, false)]
    [InlineData(1.0, 4, true)]
    public async Task GuidedChoice_EveryOutputIsOneOfTheChoices(double temperature, int n, bool stream)
    {
        string[] choices = ["positive", "negative", "neutral", "🙂 mixed"];
        var request = new { messages = new[] { new { role = "user", content = "Sentiment?" } }, guided_choice = choices, max_tokens = 50, temperature, n, stream, seed = 9 };
        var outputs = stream ? await Streamed(request) : Whole(await _server.PostJsonAsync("/v1/chat/completions", request));
        Assert.Equal(n, outputs.Count);
        Assert.All(outputs, o => Assert.Contains(o.Content, choices));
        Assert.All(outputs, o => Assert.Equal("stop", o.Finish));
    }

    [Theory]
    [InlineData("""["yes", "yes please"]""")]
    [InlineData("""["a", "a"]""")]
    [InlineData("""[]""")]
    [InlineData("""[""]""")]
    [InlineData("""[1, 2]""")]
    public async Task BadGuidedChoice_Is400(string choices)
    {
        var json = $$"""{"messages":[{"role":"user","content":"Hi"}],"guided_choice":{{choices}}}""";
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("guided_choice", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>With the experts on nodes, the constrained output is the in-process gateway's, token for token.</summary>
    [Fact]
    public async Task WithExpertNodes_TheOutputIsTheInProcessOnes()
    {
        var request = Request(0, 1, false, maxTokens: 120);
        var expected = Whole(await _server.PostJsonAsync("/v1/chat/completions", request));
        var nodes = await Task.WhenAll(new[] { "0-7", "8-15" }.Select(h => ExpertNodeProcess.StartAsync(GatewayServer.ModelDir, h)));
        try
        {
            await using var gateway = await GatewayServer.StartWithNodesAsync(GatewayServer.ModelDir, nodes);
            Assert.Equal(expected, Whole(await gateway.PostJsonAsync("/v1/chat/completions", request)));
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    private static List<(string Content, string? Finish)> Whole(JsonElement body) =>
        body.GetProperty("choices").EnumerateArray()
            .Select(c => (c.GetProperty("message").GetProperty("content").GetString()!, c.GetProperty("finish_reason").GetString())).ToList();

    private async Task<List<(string Content, string? Finish)>> Streamed(object request)
    {
        var text = new SortedDictionary<int, StringBuilder>();
        var finish = new Dictionary<int, string?>();
        foreach (var chunk in await _server.PostStreamAsync("/v1/chat/completions", request))
        {
            if (!chunk.TryGetProperty("choices", out var choices)) continue;
            foreach (var c in choices.EnumerateArray())
            {
                var index = c.GetProperty("index").GetInt32();
                if (!text.TryGetValue(index, out var sb)) text[index] = sb = new StringBuilder();
                if (c.GetProperty("delta").TryGetProperty("content", out var d) && d.ValueKind == JsonValueKind.String) sb.Append(d.GetString());
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish[index] = c.GetProperty("finish_reason").GetString();
            }
        }
        return text.Select(p => (p.Value.ToString(), finish.GetValueOrDefault(p.Key))).ToList();
    }
}
