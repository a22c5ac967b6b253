using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>Hot assignment changes on a serving expert node, through POST /v1/placement and the --placement file.</summary>
public sealed class PlacementTests
{
    private static readonly string Dir = GatewayServer.ModelDir;

    private static async Task<HttpStatusCode> DispatchAsync(HttpClient http, int layer, int expert)
    {
        var hidden = ModelConfig.Load(Path.Combine(Dir, "config.json")).HiddenSize;
        var message = DispatchCodec.Encode(new DispatchRequest(ModelFingerprint.Of(Dir), layer, 1, hidden, WireDType.Float32,
            [0], [expert], [1f], new byte[hidden * sizeof(float)]));
        var content = new ByteArrayContent(message);
        content.Headers.ContentType = new MediaTypeHeaderValue(DispatchCodec.ContentType);
        return (await http.PostAsync("/v1/dispatch", content)).StatusCode;
    }

    private static async Task<JsonElement> ExpertsAsync(HttpClient http) => JsonDocument.Parse(await http.GetStringAsync("/v1/experts")).RootElement;

    private static int[] Held(JsonElement experts, int layer) =>
        experts.GetProperty("layers").EnumerateArray().Where(l => l.GetProperty("layer").GetInt32() == layer)
            .SelectMany(l => l.GetProperty("experts").EnumerateArray().Select(e => e.GetInt32())).ToArray();

    /// <summary>Polls until <paramref name="done"/> holds for the node's /v1/experts (60 s at most).</summary>
    private static async Task<JsonElement> WaitExpertsAsync(HttpClient http, Func<JsonElement, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var last = await ExpertsAsync(http);
        while (!done(last) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
            last = await ExpertsAsync(http);
        }
        Assert.True(done(last), last.ToString());
        return last;
    }

    [Fact]
    public async Task NewPlacement_IsAdvertisedAtOnce_DroppedExpertsServeUntilDrained_ThenAreFreed()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "0-7", 0, "--drain-seconds", "4");
        using var http = new HttpClient { BaseAddress = node.Address };
        var eightBytes = (await ExpertsAsync(http)).GetProperty("expert_bytes").GetInt64();

        var accepted = await http.PostAsync("/v1/placement", new StringContent("""{"layers": {"1": "4-11", "2": [4, 5, 6, 7, 8, 9, 10, 11]}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var during = await WaitExpertsAsync(http, e => Held(e, 1).SequenceEqual(Enumerable.Range(4, 8)));
        Assert.Equal(Enumerable.Range(4, 8), Held(during, 2));
        // While draining, the union is loaded: experts 0-3 still serve gateways that have not seen the change.
        Assert.Equal(eightBytes * 12 / 8, during.GetProperty("expert_bytes").GetInt64());
        Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 1, 2));
        Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 2, 10));

        await WaitExpertsAsync(http, e => e.GetProperty("expert_bytes").GetInt64() == eightBytes);
        Assert.Equal(HttpStatusCode.MisdirectedRequest, await DispatchAsync(http, 1, 2));
        Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 1, 10));
    }

    [Fact]
    public async Task BadPlacement_IsRefused_AndChangesNothing()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "0-7");
        using var http = new HttpClient { BaseAddress = node.Address };
        foreach (var body in new[] { "not json", """{"layers": {"0": "0-3"}}""", """{"layers": {"1": "0-99"}}""", """{"experts": "0-3"}""" })
        {
            var response = await http.PostAsync("/v1/placement", new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("bad_placement", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        }
        Assert.Equal(Enumerable.Range(0, 8), Held(await ExpertsAsync(http), 1));
    }

    [Fact]
    public async Task PlacementFile_IsReadAtStart_AndReappliedWhenItChanges()
    {
        var file = Path.Combine(Path.GetTempPath(), $"moemesh-placement-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(file, """{"layers": {"1": "0-3", "2": "12-15"}}""");
        try
        {
            await using var node = await ExpertNodeProcess.StartAsync(Dir, "all", 0, "--placement", file, "--drain-seconds", "0");
            using var http = new HttpClient { BaseAddress = node.Address };
            var first = await ExpertsAsync(http);
            Assert.Equal([0, 1, 2, 3], Held(first, 1));
            Assert.Equal([12, 13, 14, 15], Held(first, 2));
            await File.WriteAllTextAsync(file, """{"layers": {"1": "0-5"}}""");
            var changed = await WaitExpertsAsync(http, e => Held(e, 1).Length == 6);
            Assert.Empty(Held(changed, 2));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task GatewayFollowsAPlacementChange_AndKeepsServingWhenTheOldHolderDies()
    {
        var request = DistributedGenerationTests.Request(8, "The experts of a mixture", "Once upon a time");
        var expected = await GatewayServer.InProcessJsonAsync(Dir, "/v1/completions", request);

        await using var a = await ExpertNodeProcess.StartAsync(Dir, "0-7");
        await using var b = await ExpertNodeProcess.StartAsync(Dir, "8-15");
        await using var gateway = await GatewayServer.StartWithNodesAsync(Dir, [a, b]);
        using var http = new HttpClient { BaseAddress = a.Address };
        Assert.Equal(HttpStatusCode.Accepted, (await http.PostAsJsonAsync("/v1/placement", new { layers = new Dictionary<string, string> { ["1"] = "all", ["2"] = "all" } })).StatusCode);

        // The gateway's routing table (polled every second) shows node-0 holding everything.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            var routing = JsonDocument.Parse(await gateway.Http.GetStringAsync("/admin/routing")).RootElement;
            var node0 = routing.GetProperty("nodes").EnumerateArray().First(n => n.GetProperty("id").GetString() == "node-0");
            if (node0.GetProperty("layers").EnumerateArray().All(l => l.GetProperty("experts").GetArrayLength() == 16)) break;
            await Task.Delay(50);
        }
        b.Kill();
        var actual = await gateway.PostJsonAsync("/v1/completions", request);
        DistributedGenerationTests.AssertSameCompletions(expected, actual);
    }
}
