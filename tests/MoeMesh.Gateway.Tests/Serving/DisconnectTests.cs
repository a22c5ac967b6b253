using System.Net.Http.Json;

namespace MoeMesh.Gateway.Tests.Serving;

/// <summary>A client that goes away frees its sequences within one step, whatever it asked for and wherever it was.</summary>
public sealed class DisconnectTests
{
    // 60 prompt tokens at 8 per step: prefill takes 8 steps, and the client leaves before the second.
    private static readonly string LongText = string.Join(' ', Enumerable.Range(0, 60).Select(i => $"w{i}"));

    public static TheoryData<string, int> Requests() => new()
    {
        { "completion stream", 1 },
        { "completion", 1 },
        { "completion n=3 stream", 3 },
        { "chat stream", 1 },
        { "chat", 1 },
    };

    private static HttpRequestMessage Request(string kind)
    {
        var stream = kind.EndsWith("stream", StringComparison.Ordinal);
        object body = kind.StartsWith("chat", StringComparison.Ordinal)
            ? new { messages = new[] { new { role = "user", content = LongText } }, max_tokens = 50, ignore_eos = true, stream }
            : new { prompt = LongText, max_tokens = 50, ignore_eos = true, stream, n = kind.Contains("n=3") ? 3 : 1 };
        return new HttpRequestMessage(HttpMethod.Post, kind.StartsWith("chat", StringComparison.Ordinal) ? "/v1/chat/completions" : "/v1/completions")
        {
            Content = JsonContent.Create(body),
        };
    }

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task ClientGoneDuringPrefill_EndsItsSequencesWithinAStep(string kind, int sequences)
    {
        await using var server = await GatewayServer.StartAsync("--max-batch-tokens", "8");
        using var hold = new LoopHold(server, 2);
        var tokensBefore = await server.MetricAsync("moemesh_generation_tokens_total");
        using var client = new CancellationTokenSource();
        var sending = server.Http.SendAsync(Request(kind), HttpCompletionOption.ResponseHeadersRead, client.Token);
        await hold.ReachedAsync();

        // The client leaves while the loop is held after the first prefill chunk; the gateway notices and asks
        // for the abort, which the loop carries out as soon as it runs again.
        await LeaveAsync(client, sending);
        await Eventually.HoldsAsync(() => Task.FromResult(hold.Loop.PendingAborts), n => n >= sequences, "the gateway noticing the client left");
        hold.Release();

        await server.WaitForMetricAsync("moemesh_requests_running", v => v == 0, "back at 0");
        Assert.Equal(0, await server.MetricAsync("moemesh_requests_waiting"));
        Assert.Equal(0, await server.MetricAsync("moemesh_kv_cache_usage_ratio"));
        // The prefill never finished: not one token was generated for the request.
        Assert.Equal(tokensBefore, await server.MetricAsync("moemesh_generation_tokens_total"));
        Assert.Contains($"moemesh_sequences_finished_total{{reason=\"abort\"}} {sequences}", await server.Http.GetStringAsync("/metrics"));
        Assert.True(hold.Steps < 8, $"{hold.Steps} steps ran: the prefill went on after the client left");
    }

    [Fact]
    public async Task AbortSeenBeforeItsSubmission_IsNotLost()
    {
        await using var server = await GatewayServer.StartAsync();
        // Another stream keeps the loop stepping.
        using var other = new CancellationTokenSource();
        var busy = server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { prompt = "Hi", max_tokens = 500, ignore_eos = true, stream = true }),
        }, HttpCompletionOption.ResponseHeadersRead, other.Token);
        using var hold = new LoopHold(server, 2, 3);
        await hold.ReachedAsync();

        // The race, played in order: the loop processes the client's abort in one iteration, and only takes
        // its submission in the next.
        var handle = new MoeMesh.Gateway.Serving.GenerationHandle([5, 6, 7], new MoeMesh.Engine.Scheduling.SamplingParams { MaxTokens = 100, IgnoreEos = true });
        hold.Loop.Abort(handle);
        hold.Release();
        await hold.ReachedAsync();
        hold.Loop.Submit([handle]);
        hold.Release();

        var events = new List<MoeMesh.Gateway.Serving.GenerationEvent>();
        await foreach (var e in handle.Events.ReadAllAsync()) events.Add(e);
        Assert.Equal(MoeMesh.Engine.Scheduling.FinishReason.Abort, Assert.Single(events).Finish);
        await LeaveAsync(other, busy);
    }

    /// <summary>The client goes away: the request is cancelled, and a response already started is dropped unread.</summary>
    private static async Task LeaveAsync(CancellationTokenSource client, Task<HttpResponseMessage> sending)
    {
        client.Cancel();
        try
        {
            (await sending).Dispose();
        }
        catch (OperationCanceledException)
        {
            // Cancelled before the response headers came.
        }
    }
}
