using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Tests.Api;

public sealed class BadInputTests : IAsyncLifetime
{
    private GatewayServer _server = null!;

    public async Task InitializeAsync() => _server = await GatewayServer.StartAsync("--max-model-len", "256");
    public async Task DisposeAsync() => await _server.DisposeAsync();

    private async Task<JsonElement> ExpectError(HttpResponseMessage response, HttpStatusCode status, string? param)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(status, response.StatusCode);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
        Assert.True(error.TryGetProperty("code", out _));
        if (param is not null) Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.DoesNotContain("   at ", text);
        return error;
    }

    [Fact]
    public async Task InvalidJson_Is400()
    {
        var response = await _server.Http.PostAsync("/v1/completions", new StringContent("{\"prompt\": ", Encoding.UTF8, "application/json"));
        await ExpectError(response, HttpStatusCode.BadRequest, null);
    }

    public static TheoryData<string, string, string> CompletionCases() => new()
    {
        { "max_tokens wrong type", """{"prompt":"Hi","max_tokens":"ten"}""", "max_tokens" },
        { "temperature wrong type", """{"prompt":"Hi","temperature":"hot"}""", "temperature" },
        { "max_tokens past context", """{"prompt":"Hi","max_tokens":100000}""", "max_tokens" },
        { "max_tokens zero", """{"prompt":"Hi","max_tokens":0}""", "max_tokens" },
        { "empty prompt", """{"prompt":""}""", "prompt" },
        { "empty prompt list", """{"prompt":[]}""", "prompt" },
        { "missing prompt", """{"max_tokens":3}""", "prompt" },
        { "prompt wrong type", """{"prompt":{"text":"Hi"}}""", "prompt" },
        { "token id out of vocabulary", """{"prompt":[1,2,99999999]}""", "prompt" },
        { "n zero", """{"prompt":"Hi","n":0}""", "n" },
        { "n too large", """{"prompt":"Hi","n":1000}""", "n" },
        { "top_p zero", """{"prompt":"Hi","top_p":0}""", "top_p" },
        { "top_p above one", """{"prompt":"Hi","top_p":1.5}""", "top_p" },
        { "negative temperature", """{"prompt":"Hi","temperature":-1}""", "temperature" },
        { "logprobs too many", """{"prompt":"Hi","logprobs":50}""", "logprobs" },
        { "stop wrong type", """{"prompt":"Hi","stop":5}""", "stop" },
        { "presence_penalty out of range", """{"prompt":"Hi","presence_penalty":3}""", "presence_penalty" },
        { "frequency_penalty wrong type", """{"prompt":"Hi","frequency_penalty":"high"}""", "frequency_penalty" },
        { "repetition_penalty zero", """{"prompt":"Hi","repetition_penalty":0}""", "repetition_penalty" },
        { "logit_bias not an object", """{"prompt":"Hi","logit_bias":[1,2]}""", "logit_bias" },
        { "logit_bias key not a token id", """{"prompt":"Hi","logit_bias":{"hello":1}}""", "logit_bias" },
        { "logit_bias token outside vocabulary", """{"prompt":"Hi","logit_bias":{"99999999":1}}""", "logit_bias" },
        { "logit_bias value out of range", """{"prompt":"Hi","logit_bias":{"5":150}}""", "logit_bias" },
        { "logit_bias value beyond a double", """{"prompt":"Hi","logit_bias":{"5":1e400}}""", "logit_bias" },
        { "temperature beyond a double", """{"prompt":"Hi","temperature":1e400}""", "temperature" },
        { "max_tokens overflowing the length check", """{"prompt":"Hi","max_tokens":2147483647}""", "max_tokens" },
        { "max_tokens past int", """{"prompt":"Hi","max_tokens":2147483648}""", "max_tokens" },
        { "too many stop strings", """{"prompt":"Hi","stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}""", "stop" },
        { "stop string too long", $$"""{"prompt":"Hi","stop":["{{new string('x', 257)}}"]}""", "stop" },
        { "too many stop token ids", $$"""{"prompt":"Hi","stop_token_ids":[{{string.Join(",", Enumerable.Repeat(5, 257))}}]}""", "stop_token_ids" },
        { "too many logit_bias entries", "{\"prompt\":\"Hi\",\"logit_bias\":{" + string.Join(",", Enumerable.Range(0, 301).Select(i => $"\"{i}\":1")) + "}}", "logit_bias" },
        { "too many prompts", $$"""{"prompt":[{{string.Join(",", Enumerable.Repeat("\"Hi\"", 65))}}]}""", "prompt" },
        { "prompts times n past the cap", """{"prompt":["a","b","c"],"n":32}""", "prompt" },
        { "unknown field", """{"prompt":"Hi","max_token":5}""", "max_token" },
        { "prompt with a lone surrogate", """{"prompt":"Hi \ud83d there"}""", "prompt" },
        { "prompt list with a lone low surrogate", """{"prompt":["fine \ud83d\ude00", "\ude00 alone"]}""", "prompt" },
        { "field given twice", """{"prompt":"Hi","max_tokens":5,"max_tokens":6}""", "max_tokens" },
        { "best_of other than n", """{"prompt":"Hi","best_of":3}""", "best_of" },
        { "suffix", """{"prompt":"Hi","suffix":"end"}""", "suffix" },
        { "min_tokens", """{"prompt":"Hi","min_tokens":4}""", "min_tokens" },
        { "response_format json_schema", """{"prompt":"Hi","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}}""", "response_format" },
        { "unknown stream option", """{"prompt":"Hi","stream":true,"stream_options":{"continuous_usage_stats":true}}""", "stream_options" },
    };

    [Fact]
    public async Task InertValuesOfUnimplementedFields_AreAccepted()
    {
        var ok = await _server.PostJsonAsync("/v1/completions", new
        {
            prompt = "Hi", max_tokens = 2, ignore_eos = true, best_of = 1, suffix = (string?)null, min_tokens = 0, response_format = new { type = "text" }, user = "u1",
            skip_special_tokens = true, store = false,
        });
        Assert.Equal(2, ok.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task BodyOverTheLimit_Is413()
    {
        await using var small = await GatewayServer.StartAsync("--max-request-bytes", "1000");
        var response = await small.PostAsync("/v1/completions", new { prompt = new string('x', 2000), max_tokens = 1 });
        var error = await ExpectError(response, HttpStatusCode.RequestEntityTooLarge, null);
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, (await small.PostAsync("/v1/completions", new { prompt = "Hi", max_tokens = 1 })).StatusCode);
    }

    [Fact]
    public async Task UnknownRouteAndMethod_AreOpenAiShaped()
    {
        await ExpectError(await _server.Http.GetAsync("/v1/nothing"), HttpStatusCode.NotFound, null);
        await ExpectError(await _server.Http.DeleteAsync("/v1/completions"), HttpStatusCode.MethodNotAllowed, null);
    }

    [Theory]
    [MemberData(nameof(CompletionCases))]
    public async Task BadCompletionRequest_Is400NamingTheField(string why, string json, string param)
    {
        var response = await _server.Http.PostAsync("/v1/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        var error = await ExpectError(response, HttpStatusCode.BadRequest, param);
        Assert.True(error.GetProperty("message").GetString()!.Length > 0, why);
    }

    [Fact]
    public async Task PromptLongerThanContext_Is400()
    {
        var response = await _server.PostAsync("/v1/completions", new { prompt = Enumerable.Repeat(5, 300).ToArray(), max_tokens = 1 });
        await ExpectError(response, HttpStatusCode.BadRequest, "prompt");
    }

    [Fact]
    public async Task UnknownModel_Is404()
    {
        var response = await _server.PostAsync("/v1/completions", new { model = "gpt-4", prompt = "Hi" });
        var error = await ExpectError(response, HttpStatusCode.NotFound, "model");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("""{"messages":"hello"}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi \udc00"}]}""")]
    [InlineData("""{"messages":[]}""")]
    [InlineData("""{"messages":[{"content":"no role"}]}""")]
    [InlineData("""{"messages":[{"role":"robot","content":"x"}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":5}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"top_logprobs":3}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"bad name"}}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"retrieval"}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tool_choice":"required"}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"},"extra":1}}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"tool_choice":"sometimes"}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_object","strict":true}}""")]
    [InlineData("""{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"1"}]}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"logprobs":true,"top_logprobs":21}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":2147483647}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"bogus":1}""")]
    public async Task BadChatRequest_Is400(string json)
    {
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        await ExpectError(response, HttpStatusCode.BadRequest, null);
    }

    [Fact]
    public async Task BadRequests_ChangeNothing_ServerKeepsServing()
    {
        await _server.Http.PostAsync("/v1/completions", new StringContent("not json", Encoding.UTF8, "application/json"));
        await _server.PostAsync("/v1/completions", new { prompt = "", max_tokens = 3 });
        var metrics = await _server.Http.GetStringAsync("/metrics");
        Assert.Contains("moemesh_prompt_tokens_total 0", metrics);
        var ok = await _server.PostJsonAsync("/v1/completions", new { prompt = "Hi", max_tokens = 2, ignore_eos = true });
        Assert.Equal(2, ok.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }
}
