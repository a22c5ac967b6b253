using System.Net;
using System.Text.Json;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>
/// The gateway with its routed experts on real expert-node processes must produce what the in-process
/// gateway produces: the same greedy tokens and the same top log-probabilities (to float rounding,
/// since partial sums arrive per node).
/// </summary>
public sealed class DistributedGenerationTests
{
    private static readonly string[] Prompts = ["The experts of a mixture", "Once upon a time", "Numbers 1 2 3 and"];

    internal static object Request(int maxTokens, params string[] prompts) => new
    {
        prompt = prompts, max_tokens = maxTokens, temperature = 0, logprobs = 3, ignore_eos = true, return_tokens_as_token_ids = true,
    };

    /// <summary>
    /// No checkpoint anywhere (the chart's default MoeDeployment): the gateway and two expert nodes started without
    /// --model each generate the built-in demo into their own folder, and together answer as one in-process gateway.
    /// </summary>
    [Fact]
    public async Task BuiltInDemo_OnNodesAndAGateway_WithoutACheckpoint_EqualsTheInProcessDemo()
    {
        var roots = Enumerable.Range(0, 4).Select(_ => Directory.CreateTempSubdirectory("moemesh-demo-").FullName).ToArray();
        try
        {
            var request = Request(8, Prompts);
            var expected = await GatewayServer.InProcessJsonAsync(MoeMesh.Engine.Demo.DemoModel.BuiltIn(roots[0]), "/v1/completions", request);
            // One node computes with libtorch, the other with the engine's kernel over the BF16 weights (--cpu-experts packed).
            await using var a = await ExpertNodeProcess.StartAsync(null, "shard:0/2", 0, "--cache-dir", roots[1]);
            await using var b = await ExpertNodeProcess.StartAsync(null, "shard:1/2", 0, "--cache-dir", roots[2], "--cpu-experts", "packed");
            await using var gateway = await GatewayProcess.StartAsync(null, "--cache-dir", roots[3], "--expert-nodes", $"{a.Address},{b.Address}");
            var response = await gateway.Http.PostAsync("/v1/completions", new StringContent(JsonSerializer.Serialize(request), System.Text.Encoding.UTF8, "application/json"));
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            Completions.AssertSame(expected, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
        }
        finally
        {
            foreach (var r in roots) Directory.Delete(r, recursive: true);
        }
    }

    [Theory]
    [InlineData("v3", "0-7|8-15", false)]
    [InlineData("v3", "0-9|6-15|0-3,12-15", true)]
    [InlineData("v2", "0-4|5-15", true)]
    [InlineData("v2", "0-11|4-15", false)]
    public async Task Greedy_TokensAndTopLogprobs_EqualTheInProcessGateway(string shape, string holdings, bool microBatches)
    {
        var dir = shape == "v3" ? GatewayServer.ModelDir : GatewayServer.V2ModelDir;
        var request = Request(10, Prompts);
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);

        var nodes = await Task.WhenAll(holdings.Split('|').Select(h => ExpertNodeProcess.StartAsync(dir, h)));
        try
        {
            // Micro-batches on: every step of more than one sequence is split in two and pipelined.
            string[] split = microBatches ? ["--micro-batches", "2", "--micro-batch-min-tokens", "1"] : ["--micro-batches", "1"];
            await using var gateway = await GatewayServer.StartWithNodesAsync(dir, nodes, split);
            var actual = await gateway.PostJsonAsync("/v1/completions", request);
            Completions.AssertSame(expected, actual);
            var metrics = await gateway.Http.GetStringAsync("/metrics");
            Assert.Contains("moemesh_expert_coverage_ratio 1", metrics);
            Assert.Contains("moemesh_expert_dispatch_seconds_count{node=\"node-1\"}", metrics);
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    [Fact]
    public async Task NodeHoldingAQuarter_LoadsAboutAQuarterOfTheExpertBytes()
    {
        var dir = GatewayServer.ModelDir;
        await using var all = await ExpertNodeProcess.StartAsync(dir, "all");
        await using var quarter = await ExpertNodeProcess.StartAsync(dir, "4-7");
        using var http = new HttpClient();
        var a = JsonDocument.Parse(await http.GetStringAsync(new Uri(all.Address, "/v1/experts"))).RootElement;
        var q = JsonDocument.Parse(await http.GetStringAsync(new Uri(quarter.Address, "/v1/experts"))).RootElement;
        Assert.Equal(4 * q.GetProperty("expert_bytes").GetInt64(), a.GetProperty("expert_bytes").GetInt64());
        // Read from the checkpoint: its experts and nothing else (no attention, embeddings or other experts).
        var ratio = (double)q.GetProperty("checkpoint_bytes_read").GetInt64() / a.GetProperty("checkpoint_bytes_read").GetInt64();
        Assert.InRange(ratio, 0.24, 0.26);
        Assert.Equal([4, 5, 6, 7], q.GetProperty("layers")[0].GetProperty("experts").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public async Task WithoutAnyNode_GatewayIsNotReady_AndSaysWhichExpertsAreMissing()
    {
        await using var node = await ExpertNodeProcess.StartAsync(GatewayServer.ModelDir, "0-7");
        await using var gateway = await GatewayServer.StartAsync("--expert-nodes", node.Address.ToString());
        // Until the first holdings poll lands nothing is covered; then exactly experts 8-15 are missing.
        var (status, body) = await Eventually.HoldsAsync(() => gateway.GetTextAsync("/readyz"), r => r.Body.Contains("layer 1 expert 8,"), "readyz naming the missing experts");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        // Two MoE layers (1 and 2) each miss experts 8-15.
        Assert.Contains("16 experts have no available node (layer 1 expert 8, layer 1 expert 9,", body);
    }
}

/// <summary>A gateway process without an admin key (as the operator runs it) serves through expert nodes, and has no admin routes.</summary>
public sealed class NoAdminKeyTests
{
    [Fact]
    public async Task GatewayWithoutAdminKey_ServesThroughExpertNodes_AndHasNoNodeProxies()
    {
        var dir = GatewayServer.ModelDir;
        var request = DistributedGenerationTests.Request(4, "The experts of a mixture");
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);
        await using var node = await ExpertNodeProcess.StartAsync(dir, "all");
        await using var gateway = await GatewayProcess.StartAsync(dir, "--expert-nodes", node.Address.ToString());
        var response = await gateway.Http.PostAsync("/v1/completions", new StringContent(System.Text.Json.JsonSerializer.Serialize(request), System.Text.Encoding.UTF8, "application/json"));
        response.EnsureSuccessStatusCode();
        Completions.AssertSame(expected, System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await gateway.Http.GetAsync("/admin/nodes/node-0/metrics")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await gateway.Http.GetAsync("/admin/routing")).StatusCode);
    }
}
