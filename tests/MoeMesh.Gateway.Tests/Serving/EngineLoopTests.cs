using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MoeMesh.Gateway.Hosting;

namespace MoeMesh.Gateway.Tests.Serving;

/// <summary>The engine loop when the host stops, and when the loop itself dies.</summary>
public sealed class EngineLoopTests
{
    private static HttpRequestMessage Stream(int maxTokens) => new(HttpMethod.Post, "/v1/completions")
    {
        Content = JsonContent.Create(new { prompt = "Hi", max_tokens = maxTokens, temperature = 0, ignore_eos = true, stream = true, stream_options = new { include_usage = true } }),
    };

    [Fact]
    public async Task GracefulShutdown_FinishesInFlightStreams()
    {
        var server = await GatewayServer.StartAsync();
        const int maxTokens = 24;
        // Held before its fourth step, the stream has three tokens when the stop begins.
        using var hold = new LoopHold(server, 4);
        // Nothing here waits on the stream while the loop is held: its first tokens may carry no text yet.
        var sending = server.Http.SendAsync(Stream(maxTokens), HttpCompletionOption.ResponseHeadersRead);
        await hold.ReachedAsync();

        // Stop while the stream is mid-generation; it must run to its natural end, then the host stops.
        var stopping = server.App.StopAsync();
        hold.Release();
        using var response = await sending;
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<string>();
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

    [Fact]
    public async Task LoopFailure_EndsEveryRequestWithAnError_TurnsUnready_AndStopsWithExitCode1()
    {
        await using var server = await GatewayServer.StartAsync("--max-running", "1");
        var exitCode = GatewayApp.ExitCodeOnceStopped(server.App);
        using var hold = new LoopHold(server, 3);
        var sending = server.Http.SendAsync(Stream(50), HttpCompletionOption.ResponseHeadersRead);
        await hold.ReachedAsync();
        // A second request waits behind the first (one may run at a time).
        var waiting = server.PostAsync("/v1/completions", new { prompt = "Hello", max_tokens = 5 });
        await server.WaitForMetricAsync("moemesh_requests_waiting", v => v == 1, "at 1");

        hold.FailWith(new InvalidOperationException("injected engine fault"));
        hold.Release();

        using var streaming = await sending;
        var rest = await streaming.Content.ReadAsStringAsync();
        Assert.Contains("\"type\":\"server_error\"", rest);
        Assert.EndsWith("data: [DONE]", rest.TrimEnd());
        var failed = await waiting;
        Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode);
        var body = await failed.Content.ReadAsStringAsync();
        Assert.Equal("server_error", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("type").GetString());
        // The exception's own text stays in the log.
        Assert.DoesNotContain("injected", body + rest);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await server.GetTextAsync("/readyz")).Status);
        var refused = await server.PostAsync("/v1/completions", new { prompt = "Hi", max_tokens = 1 });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        await Eventually.HoldsAsync(() => Task.FromResult(server.App.Lifetime.ApplicationStopping.IsCancellationRequested), "the host being asked to stop");
        Assert.Equal(1, exitCode());
    }
}
