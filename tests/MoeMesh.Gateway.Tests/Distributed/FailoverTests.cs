using System.Net;
using System.Text.Json;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>Expert nodes dying under a serving gateway: replicas take over, lone holders fail cleanly and come back.</summary>
public sealed class FailoverTests
{
    private static readonly string[] Prompts = ["The experts of a mixture", "Once upon a time", "Numbers 1 2 3 and", "A gateway routes"];

    [Fact]
    public async Task KillingANodeWithAReplica_DuringGeneration_EveryRequestCompletesWithTheSameOutput()
    {
        var dir = GatewayServer.ModelDir;
        var request = DistributedGenerationTests.Request(160, Prompts);
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);

        await using var a = await ExpertNodeProcess.StartAsync(dir, "all");
        await using var b = await ExpertNodeProcess.StartAsync(dir, "all");
        await using var gateway = await GatewayServer.StartWithNodesAsync(dir, [a, b]);
        // Kill node-0 between two steps of the generation, once both nodes have taken dispatches.
        using var hold = new Serving.LoopHold(gateway, 6);
        var running = gateway.PostJsonAsync("/v1/completions", request);
        await hold.ReachedAsync();
        a.Kill();
        hold.Release();
        var actual = await running;

        Completions.AssertSame(expected, actual);
        Assert.All(actual.GetProperty("choices").EnumerateArray(), c => Assert.Equal("length", c.GetProperty("finish_reason").GetString()));
        var metrics = await gateway.Http.GetStringAsync("/metrics");
        Assert.Matches("moemesh_expert_dispatch_errors_total\\{node=\"node-0\",reason=\"transport\"\\} [1-9]", metrics);
    }

    [Fact]
    public async Task StalledNode_PastTheDeadline_IsRetriedOnAReplica_WithTheSameOutput()
    {
        var dir = GatewayServer.ModelDir;
        var request = DistributedGenerationTests.Request(48, Prompts);
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);

        await using var a = await ExpertNodeProcess.StartAsync(dir, "all");
        await using var b = await ExpertNodeProcess.StartAsync(dir, "all");
        // The deadline must be missed by the frozen node only: a healthy node on a loaded 2-core machine answers well within it.
        await using var gateway = await GatewayServer.StartWithNodesAsync(dir, [a, b], "--expert-timeout-ms", "5000");
        using var hold = new Serving.LoopHold(gateway, 6);
        var running = gateway.PostJsonAsync("/v1/completions", request);
        await hold.ReachedAsync();
        a.Pause();
        hold.Release();
        try
        {
            Completions.AssertSame(expected, await running);
        }
        finally
        {
            a.Resume();
        }
        var metrics = await gateway.Http.GetStringAsync("/metrics");
        Assert.Matches("moemesh_expert_dispatch_errors_total\\{node=\"node-0\",reason=\"timeout\"\\} [1-9]", metrics);
    }

    [Fact]
    public async Task KillingTheOnlyHolder_FailsRequestsCleanly_AndTheGatewayRecoversWhenItReturns()
    {
        var dir = GatewayServer.ModelDir;
        var request = DistributedGenerationTests.Request(8, Prompts[0]);
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);

        await using var low = await ExpertNodeProcess.StartAsync(dir, "0-7");
        var high = await ExpertNodeProcess.StartAtAsync(dir, "8-15", $"{Programs.PrivateLoopbackHost()}:0");
        await using var gateway = await GatewayServer.StartWithNodesAsync(dir, [low, high]);
        await high.DisposeAsync();

        var failed = await gateway.PostAsync("/v1/completions", request);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        var error = JsonDocument.Parse(await failed.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("experts_unavailable", error.GetProperty("code").GetString());
        Assert.Contains("unavailable", error.GetProperty("message").GetString());
        // Which node failed and how is for the log; the client is not told the cluster's addresses.
        Assert.DoesNotContain(high.Address.Host, error.GetProperty("message").GetString());
        Assert.Equal(HttpStatusCode.OK, (await gateway.Http.GetAsync("/healthz")).StatusCode);
        await gateway.WaitReadyAsync(ready: false);

        // A node with those experts comes back on the same address: coverage returns and so does service.
        await using var back = await ExpertNodeProcess.StartAtAsync(dir, "8-15", high.Address.Authority);
        await gateway.WaitReadyAsync();
        var actual = await gateway.PostJsonAsync("/v1/completions", request);
        Completions.AssertSame(expected, actual);
    }

    [Fact]
    public async Task StreamingRequest_WhenItsExpertsVanish_EndsWithAnErrorEventAndDone()
    {
        var dir = GatewayServer.ModelDir;
        await using var node = await ExpertNodeProcess.StartAsync(dir, "all");
        await using var gateway = await GatewayServer.StartWithNodesAsync(dir, [node]);
        var message = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = System.Net.Http.Json.JsonContent.Create(new { prompt = "Hi", max_tokens = 2000, ignore_eos = true, stream = true }),
        };
        using var hold = new Serving.LoopHold(gateway, 3);
        var sending = gateway.Http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
        await hold.ReachedAsync();
        node.Kill();
        hold.Release();
        using var response = await sending;
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync());
        var rest = await reader.ReadToEndAsync();
        Assert.Contains("\"code\":\"experts_unavailable\"", rest);
        Assert.EndsWith("data: [DONE]", rest.TrimEnd());
    }
}
