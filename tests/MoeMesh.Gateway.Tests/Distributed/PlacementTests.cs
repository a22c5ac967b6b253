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

    /// <summary>Polls until <paramref name="done"/> holds for the node's /v1/experts.</summary>
    private static Task<JsonElement> WaitExpertsAsync(HttpClient http, Func<JsonElement, bool> done) =>
        Eventually.HoldsAsync(() => ExpertsAsync(http), done, "node holdings");

    private const string NodeKey = "placement-test-key";

    /// <summary>A private copy of the test checkpoint that a test may break; the caller deletes it.</summary>
    private static string CopyOfCheckpoint(bool withWeights)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"moemesh-checkpoint-copy-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Dir).Where(f => withWeights || !f.EndsWith(".safetensors", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    /// <summary>A node that takes placements over HTTP (which needs its --api-key) and a client presenting the key.</summary>
    private static async Task<(ExpertNodeProcess Node, HttpClient Http)> KeyedNodeAsync(string experts, params string[] extraArgs)
    {
        var node = await ExpertNodeProcess.StartAsync(Dir, experts, 0, ["--api-key", NodeKey, .. extraArgs]);
        return (node, new HttpClient { BaseAddress = node.Address, DefaultRequestHeaders = { Authorization = new("Bearer", NodeKey) } });
    }

    private static Task<HttpResponseMessage> PlaceAsync(HttpClient http, string placement) =>
        http.PostAsync("/v1/placement", new StringContent(placement, Encoding.UTF8, "application/json"));

    [Fact]
    public async Task NewPlacement_IsAdvertisedAtOnce_AndDroppedExpertsServeWhileDraining()
    {
        // A drain far longer than the test: the window is open whatever the machine's speed.
        var (node, http) = await KeyedNodeAsync("0-7", "--drain-seconds", "3600");
        await using var _ = node;
        using var __ = http;
        var eightBytes = (await ExpertsAsync(http)).GetProperty("expert_bytes").GetInt64();

        Assert.Equal(HttpStatusCode.Accepted, (await PlaceAsync(http, """{"layers": {"1": "4-11", "2": [4, 5, 6, 7, 8, 9, 10, 11]}}""")).StatusCode);
        var during = await WaitExpertsAsync(http, e => Held(e, 1).SequenceEqual(Enumerable.Range(4, 8)));
        Assert.Equal(Enumerable.Range(4, 8), Held(during, 2));
        Assert.Equal("Draining", during.GetProperty("placement").GetProperty("state").GetString());
        // While draining, the union is loaded: experts 0-3 still serve gateways that have not seen the change.
        Assert.Equal(eightBytes * 12 / 8, during.GetProperty("expert_bytes").GetInt64());
        Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 1, 2));
        Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 2, 10));
    }

    [Fact]
    public async Task AfterTheDrain_DroppedExpertsAreFreed_AndRefused()
    {
        var (node, http) = await KeyedNodeAsync("0-7", "--drain-seconds", "0");
        await using var _ = node;
        using var __ = http;
        var eightBytes = (await ExpertsAsync(http)).GetProperty("expert_bytes").GetInt64();
        Assert.Equal(HttpStatusCode.Accepted, (await PlaceAsync(http, """{"layers": {"1": "4-11", "2": "4-11"}}""")).StatusCode);
        var done = await WaitExpertsAsync(http, e => e.GetProperty("placement").GetProperty("state").GetString() == "Steady" && Held(e, 1).Contains(11));
        Assert.Equal(eightBytes, done.GetProperty("expert_bytes").GetInt64());
        Assert.Equal(HttpStatusCode.MisdirectedRequest, await DispatchAsync(http, 1, 2));
        Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 1, 10));
    }

    [Fact]
    public async Task PlacementOverHttp_NeedsTheNodesKey()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "0-7");
        using var http = new HttpClient { BaseAddress = node.Address };
        var refused = await PlaceAsync(http, """{"layers": {"1": "8-15"}}""");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("placement_needs_api_key", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(Enumerable.Range(0, 8), Held(await ExpertsAsync(http), 1));
    }

    [Fact]
    public async Task PlacementThatCannotLoad_IsReported_AndTheNodeKeepsServing()
    {
        // A private copy of the checkpoint whose weights go missing after the node has loaded its experts.
        var dir = CopyOfCheckpoint(withWeights: true);
        try
        {
            await using var node = await ExpertNodeProcess.StartAsync(dir, "0-7", 0, "--api-key", NodeKey);
            using var http = new HttpClient { BaseAddress = node.Address, DefaultRequestHeaders = { Authorization = new("Bearer", NodeKey) } };
            File.Move(Path.Combine(dir, "model.safetensors"), Path.Combine(dir, "moved.safetensors"));
            Assert.Equal(HttpStatusCode.Accepted, (await PlaceAsync(http, """{"layers": {"1": "8-15", "2": "8-15"}}""")).StatusCode);
            var failed = await WaitExpertsAsync(http, e => e.GetProperty("placement").GetProperty("error").ValueKind == JsonValueKind.String);
            Assert.Contains("placement not applied", failed.GetProperty("placement").GetProperty("error").GetString());
            Assert.Equal("Steady", failed.GetProperty("placement").GetProperty("state").GetString());
            Assert.Equal(Enumerable.Range(0, 8), Held(failed, 1));
            Assert.Contains("moemesh_expert_placement_changes_total{result=\"failed\"} 1", await http.GetStringAsync("/metrics"));
            Assert.Equal(HttpStatusCode.OK, await DispatchAsync(http, 1, 3));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task NodeWhoseExpertsCannotLoad_IsUnhealthy_WithoutTellingProbesItsPaths()
    {
        var dir = CopyOfCheckpoint(withWeights: false);
        try
        {
            await using var node = await ExpertNodeProcess.StartListeningAsync(dir, "0-7");
            using var http = new HttpClient { BaseAddress = node.Address };
            var (status, body) = await Eventually.HoldsAsync(async () =>
            {
                using var r = await http.GetAsync("/healthz");
                return (r.StatusCode, await r.Content.ReadAsStringAsync());
            }, r => r.StatusCode != HttpStatusCode.OK, "/healthz reporting the failed load");
            Assert.Equal(HttpStatusCode.InternalServerError, status);
            Assert.Contains("log", body);
            Assert.DoesNotContain(dir, body);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz")).StatusCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task BadPlacement_IsRefused_AndChangesNothing()
    {
        var (node, http) = await KeyedNodeAsync("0-7");
        await using var _ = node;
        using var __ = http;
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
    public async Task OperatorsUniformPlacement_IsServedByTheNodes_AndCoversEveryExpert()
    {
        // The documents the operator writes into the placement ConfigMap, read by real nodes through --placement.
        var plan = MoeMesh.Operator.Desired.PlacementPlan.Uniform(2, 1);
        var files = Enumerable.Range(0, 2).Select(_ => Path.Combine(Path.GetTempPath(), $"moemesh-placement-{Guid.NewGuid():N}.json")).ToArray();
        for (var i = 0; i < 2; i++) await File.WriteAllTextAsync(files[i], plan.Document(i, 3));
        try
        {
            var request = DistributedGenerationTests.Request(8, "The experts of a mixture");
            var expected = await GatewayServer.InProcessJsonAsync(Dir, "/v1/completions", request);
            await using var first = await ExpertNodeProcess.StartAsync(Dir, "all", 0, "--placement", files[0]);
            await using var second = await ExpertNodeProcess.StartAsync(Dir, "all", 0, "--placement", files[1]);
            var config = ModelConfig.Load(Path.Combine(Dir, "config.json"));
            var half = config.NRoutedExperts / 2;
            foreach (var (node, held) in new[] { (first, Enumerable.Range(0, half)), (second, Enumerable.Range(half, config.NRoutedExperts - half)) })
            {
                using var http = new HttpClient { BaseAddress = node.Address };
                var experts = await ExpertsAsync(http);
                Assert.Equal(3, experts.GetProperty("placement").GetProperty("generation").GetInt64());
                foreach (var layer in Enumerable.Range(0, config.NumHiddenLayers).Where(config.IsMoeLayer)) Assert.Equal(held, Held(experts, layer));
                Assert.Equal(3, await Programs.MetricAsync(http, "moemesh_expert_placement_generation"));
            }
            await using var gateway = await GatewayServer.StartWithNodesAsync(Dir, [first, second]);
            Completions.AssertSame(expected, await gateway.PostJsonAsync("/v1/completions", request));
        }
        finally
        {
            foreach (var f in files) File.Delete(f);
        }
    }

    [Fact]
    public async Task GatewayFollowsAPlacementChange_AndKeepsServingWhenTheOldHolderDies()
    {
        var request = DistributedGenerationTests.Request(8, "The experts of a mixture", "Once upon a time");
        var expected = await GatewayServer.InProcessJsonAsync(Dir, "/v1/completions", request);

        var (a, http) = await KeyedNodeAsync("0-7");
        await using var _ = a;
        using var __ = http;
        await using var b = await ExpertNodeProcess.StartAsync(Dir, "8-15", 0, "--api-key", NodeKey);
        await using var gateway = await GatewayServer.StartWithNodesAsync(Dir, [a, b], "--expert-api-key", NodeKey);
        Assert.Equal(HttpStatusCode.Accepted, (await http.PostAsJsonAsync("/v1/placement", new { layers = new Dictionary<string, string> { ["1"] = "all", ["2"] = "all" } })).StatusCode);

        // The gateway's routing table (polled every second) shows node-0 holding everything.
        await Eventually.HoldsAsync(async () =>
        {
            var routing = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/routing")).RootElement;
            var node0 = routing.GetProperty("nodes").EnumerateArray().First(n => n.GetProperty("id").GetString() == "node-0");
            return node0.GetProperty("layers").EnumerateArray().All(l => l.GetProperty("experts").GetArrayLength() == 16);
        }, "the gateway's table showing node-0 holding every expert");
        b.Kill();
        var actual = await gateway.PostJsonAsync("/v1/completions", request);
        Completions.AssertSame(expected, actual);
    }
}
