using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Dispatch;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>
/// Expert nodes started with --api-key serve /v1 only to callers presenting it; a gateway with the same
/// --expert-api-key works as before, one without it never routes to them and says why.
/// </summary>
public sealed class NodeAuthTests
{
    private const string NodeKey = "node-secret";
    private const string GatewayKey = "gateway-secret";
    private static readonly string Dir = GatewayServer.ModelDir;

    private static HttpClient Client(Uri address, string? key) => new()
    {
        BaseAddress = address,
        DefaultRequestHeaders = { Authorization = key is null ? null : new AuthenticationHeaderValue("Bearer", key) },
    };

    [Fact]
    public async Task KeyedNode_RefusesV1WithoutTheKey_ChangesNothing_AndKeepsProbesOpen()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "0-7", 0, "--api-key", NodeKey);
        using var anonymous = Client(node.Address, null);
        using var wrong = Client(node.Address, "not-the-key");
        using var keyed = Client(node.Address, NodeKey);
        var frame = DispatchCodec.Encode(DispatchRefusalTests.Valid());
        var placement = new StringContent("""{"layers": {"1": "8-15"}}""", Encoding.UTF8, "application/json");

        foreach (var (why, response) in new[]
        {
            ("holdings, no key", await anonymous.GetAsync("/v1/experts")),
            ("holdings, wrong key", await wrong.GetAsync("/v1/experts")),
            ("dispatch, no key", await DispatchRefusalTests.PostAsync(anonymous, frame)),
            ("dispatch, wrong key", await DispatchRefusalTests.PostAsync(wrong, frame)),
            ("placement, no key", await anonymous.PostAsync("/v1/placement", placement)),
        })
        {
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{why}: {(int)response.StatusCode}");
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
        }

        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/readyz")).StatusCode);
        var metrics = await anonymous.GetStringAsync("/metrics");
        Assert.DoesNotContain("moemesh_expert_tokens_total{layer=\"1\"", metrics);

        // With the key: the refused placement did not happen, dispatch works.
        var holdings = JsonDocument.Parse(await keyed.GetStringAsync("/v1/experts")).RootElement.GetProperty("layers");
        Assert.All(holdings.EnumerateArray(), l => Assert.Equal(Enumerable.Range(0, 8), l.GetProperty("experts").EnumerateArray().Select(e => e.GetInt32())));
        Assert.Equal(HttpStatusCode.OK, (await DispatchRefusalTests.PostAsync(keyed, frame)).StatusCode);
    }

    [Fact]
    public async Task GatewayWithTheNodesKey_GeneratesAsInProcess_WithoutIt_StaysUnreadyAndSaysWhy()
    {
        var request = DistributedGenerationTests.Request(6, "The experts of a mixture");
        var expected = await GatewayServer.InProcessJsonAsync(Dir, "/v1/completions", request);
        await using var low = await ExpertNodeProcess.StartAsync(Dir, "0-7", 0, "--api-key", NodeKey);
        // The second node takes its key from the environment, as a Kubernetes Secret would give it.
        await using var high = await ExpertNodeProcess.StartWithEnvironmentAsync(Dir, "8-15", new Dictionary<string, string> { ["MOEMESH_API_KEY"] = NodeKey });
        using (var anonymous = Client(high.Address, null))
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/experts")).StatusCode);

        await using (var gateway = await GatewayServer.StartWithNodesAsync(Dir, [low, high], "--expert-api-key", NodeKey, "--api-key", GatewayKey))
        {
            gateway.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GatewayKey);
            Completions.AssertSame(expected, await gateway.PostJsonAsync("/v1/completions", request));
            // The admin proxy presents the nodes' key, not the client's gateway key.
            var proxied = await gateway.Admin.GetAsync("/admin/nodes/node-0/v1/experts");
            Assert.True(proxied.IsSuccessStatusCode, $"{(int)proxied.StatusCode}: {await proxied.Content.ReadAsStringAsync()}");
        }

        await using var unkeyed = await GatewayServer.StartForAsync(Dir, "--expert-nodes", $"{low.Address},{high.Address}");
        var routing = await WaitForErrorAsync(unkeyed);
        Assert.Contains("--expert-api-key", routing);
        var ready = await unkeyed.Http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        var response = await unkeyed.PostAsync("/v1/completions", request);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
    }

    /// <summary>Polls /admin/routing until node-0 reports an error (the directory polls every second).</summary>
    private static async Task<string> WaitForErrorAsync(GatewayServer gateway)
    {
        var node = await Eventually.HoldsAsync(async () => JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/routing")).RootElement.GetProperty("nodes")[0],
            n => n.GetProperty("error").ValueKind == JsonValueKind.String, "node-0 reporting an error");
        return node.GetProperty("error").GetString()!;
    }
}
