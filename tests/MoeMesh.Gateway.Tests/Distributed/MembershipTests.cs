using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>Expert nodes joining and leaving a serving gateway through PUT /admin/nodes.</summary>
public sealed class MembershipTests
{
    private static async Task<List<string>> RoutedNodesAsync(GatewayServer gateway) =>
        JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/routing")).RootElement.GetProperty("nodes").EnumerateArray()
            .Where(n => n.GetProperty("layers").GetArrayLength() > 0).Select(n => n.GetProperty("id").GetString()!).ToList();

    [Fact]
    public async Task NodesJoinAndLeave_WhileServing_AndCoverageFollows()
    {
        var dir = GatewayServer.ModelDir;
        var request = DistributedGenerationTests.Request(8, "The experts of a mixture");
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);
        await using var low = await ExpertNodeProcess.StartAsync(dir, "0-7");
        await using var high = await ExpertNodeProcess.StartAsync(dir, "8-15");
        await using var gateway = await GatewayServer.StartForAsync(dir, "--expert-nodes", low.Address.ToString());
        await gateway.WaitReadyAsync(ready: false);

        // The second node joins: it becomes node-1, the table covers every expert, requests match in-process.
        var joined = await gateway.Admin.PutAsJsonAsync("/admin/nodes", new { nodes = new[] { low.Address.ToString(), high.Address.ToString() } });
        Assert.Equal(HttpStatusCode.OK, joined.StatusCode);
        Assert.Equal(["node-0", "node-1"], await RoutedNodesAsync(gateway));
        await gateway.WaitReadyAsync();
        Completions.AssertSame(expected, await gateway.PostJsonAsync("/v1/completions", request));

        // The first one leaves: its experts have no holder; requests fail cleanly and the gateway says why.
        var left = await gateway.Admin.PutAsJsonAsync("/admin/nodes", new { nodes = new[] { high.Address.ToString() } });
        Assert.Equal(HttpStatusCode.OK, left.StatusCode);
        Assert.Equal(["node-1"], await RoutedNodesAsync(gateway));
        await gateway.WaitReadyAsync(ready: false);
        var failed = await gateway.PostAsync("/v1/completions", request);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);

        foreach (var bad in new object[] { new { nodes = "x" }, new { nodes = new[] { "ftp://host:1" } }, new { nodes = Array.Empty<string>() } })
        {
            var response = await gateway.Admin.PutAsJsonAsync("/admin/nodes", bad);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("nodes", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
        }
        Assert.Equal(["node-1"], await RoutedNodesAsync(gateway));
    }
}
