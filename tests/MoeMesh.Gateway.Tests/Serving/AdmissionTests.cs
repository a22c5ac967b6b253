using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace MoeMesh.Gateway.Tests.Serving;

/// <summary>What gets in: the waiting bound of --max-queue.</summary>
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
    public async Task WaitingSequences_NeverExceedMaxQueue_WhileOthersRun()
    {
        await using var server = await GatewayServer.StartAsync("--max-queue", "8", "--max-running", "1");
        // A runs for the whole burst (thousands of tokens): every later sequence waits in the scheduler.
        using var stopA = new CancellationTokenSource();
        var a = await server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { prompt = "Hi", max_tokens = 4000, ignore_eos = true, stream = true }),
        }, HttpCompletionOption.ResponseHeadersRead, stopA.Token);
        var aStream = new StreamReader(await a.Content.ReadAsStreamAsync(stopA.Token));
        Assert.StartsWith("data: ", await aStream.ReadLineAsync(stopA.Token));

        var burst = Enumerable.Range(0, 40).Select(_ => server.PostAsync("/v1/completions", new { prompt = "Hello", max_tokens = 2, ignore_eos = true })).ToList();
        // Past the bound, requests are refused at once; the admitted ones wait behind A.
        await Eventually.HoldsAsync(() => Task.FromResult(burst.Count(t => t.IsCompleted)), n => n >= 32, "the refusals");
        Assert.Equal(32, burst.Count(t => t.IsCompleted));
        foreach (var refused in burst.Where(t => t.IsCompleted).Select(t => t.Result))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
        }
        Assert.Equal(8, await server.MetricAsync("moemesh_requests_waiting"));
        Assert.Equal(1, await server.MetricAsync("moemesh_requests_running"));

        stopA.Cancel();
        a.Dispose();
        var admitted = await Task.WhenAll(burst.Where(t => !t.IsCompleted));
        Assert.All(admitted, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(8, admitted.Length);
    }
}
