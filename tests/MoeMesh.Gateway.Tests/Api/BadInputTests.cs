using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

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
    };

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
    [InlineData("""{"messages":[]}""")]
    [InlineData("""{"messages":[{"content":"no role"}]}""")]
    [InlineData("""{"messages":[{"role":"tool","content":"x"}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":"Hi"}],"top_logprobs":3}""")]
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

public sealed class AdmissionTests
{
    [Fact]
    public async Task MoreThanTheQueueHolds_Is429WithRetryAfter()
    {
        await using var server = await GatewayServer.StartAsync("--max-queue", "2");
        var response = await server.PostAsync("/v1/completions", new { prompt = "Hi", max_tokens = 2, n = 3 });
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.NotNull(response.Headers.RetryAfter);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("rate_limit_error", error.GetProperty("type").GetString());
        var ok = await server.PostJsonAsync("/v1/completions", new { prompt = "Hi", max_tokens = 2, n = 2 });
        Assert.Equal(2, ok.GetProperty("choices").GetArrayLength());
    }

    [Fact]
    public async Task ApiKey_IsRequiredOnV1Routes()
    {
        await using var server = await GatewayServer.StartAsync("--api-key", "sekret");
        var denied = await server.PostAsync("/v1/completions", new { prompt = "Hi", max_tokens = 1 });
        Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
        Assert.Equal("invalid_api_key", JsonDocument.Parse(await denied.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { prompt = "Hi", max_tokens = 1 }) };
        request.Headers.Authorization = new("Bearer", "sekret");
        Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(request)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task ClientDisconnect_FreesItsSequence()
    {
        await using var server = await GatewayServer.StartAsync();
        using var cts = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { prompt = "Hi", max_tokens = 3000, ignore_eos = true, stream = true }),
        };
        var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        var stream = await response.Content.ReadAsStreamAsync(cts.Token);
        var reader = new StreamReader(stream);
        Assert.StartsWith("data: ", await reader.ReadLineAsync(cts.Token));
        Assert.Equal(1, await WaitForGauge(server, "moemesh_requests_running", 1));
        cts.Cancel();
        response.Dispose();
        Assert.Equal(0, await WaitForGauge(server, "moemesh_requests_running", 0));
        Assert.Equal(0, await Gauge(server, "moemesh_kv_cache_usage_ratio"));
        Assert.Contains("moemesh_sequences_finished_total{reason=\"abort\"} 1", await server.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task GracefulShutdown_FinishesInFlightStreams()
    {
        var server = await GatewayServer.StartAsync();
        const int maxTokens = 24;
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new
            {
                prompt = "Hi", max_tokens = maxTokens, ignore_eos = true, stream = true, stream_options = new { include_usage = true },
            }),
        };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<string> { (await reader.ReadLineAsync())! };
        Assert.StartsWith("data: ", lines[0]);

        // Stop while the stream is mid-generation; it must run to its natural end, then the host stops.
        var stopping = server.App.StopAsync();
        while (await reader.ReadLineAsync() is { } line) lines.Add(line);
        await stopping;

        var data = lines.Where(l => l.StartsWith("data: ")).Select(l => l[6..]).ToList();
        Assert.Equal("[DONE]", data[^1]);
        var payloads = data.SkipLast(1).Select(d => JsonDocument.Parse(d).RootElement).ToList();
        Assert.Equal("length", payloads.Select(p => p.GetProperty("choices")).Where(c => c.GetArrayLength() > 0)
            .Select(c => c[0].GetProperty("finish_reason")).Last(f => f.ValueKind == JsonValueKind.String).GetString());
        Assert.Equal(maxTokens, payloads[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await server.App.DisposeAsync();
    }

    /// <summary>Polls the gauge until it reads <paramref name="value"/> or 30 s pass; returns the last reading.</summary>
    private static async Task<double> WaitForGauge(GatewayServer server, string name, double value)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        double last;
        while ((last = await Gauge(server, name)) != value && DateTime.UtcNow < deadline) await Task.Delay(20);
        return last;
    }

    private static async Task<double> Gauge(GatewayServer server, string name)
    {
        var line = (await server.Http.GetStringAsync("/metrics")).Split('\n').First(l => l.StartsWith(name + " "));
        return double.Parse(line.Split(' ')[1]);
    }
}
