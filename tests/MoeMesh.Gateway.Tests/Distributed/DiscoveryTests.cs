using k8s;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Gateway.Routing;
using MoeMesh.Testing.KubeApi;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>
/// --expert-discovery: a serving gateway follows the EndpointSlices of the expert Service on a Kubernetes API
/// server (the tests' own, over HTTPS, through the real KubernetesClient) while real expert nodes join, turn
/// not-ready, go away and move between slices; no request fails and every answer equals the in-process one.
/// </summary>
public sealed class DiscoveryTests
{
    private const string Ns = "llm";
    private const string Service = "m-experts";

    [Fact]
    public async Task GatewayFollowsTheEndpointSlices_WhileServing_WithoutAFailedRequest()
    {
        var dir = GatewayServer.ModelDir;
        var request = DistributedGenerationTests.Request(4, "The experts of a mixture");
        var expected = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", request);
        await using var api = await TestApiServer.StartAsync();
        var kubeconfig = api.WriteKubeconfig(Path.Combine(Path.GetTempPath(), $"moemesh-discovery-{Guid.NewGuid():N}.yaml"));
        // As in a cluster, every node listens on the Service's one port, each at its own address.
        var port = Random.Shared.Next(20_000, 60_000);
        var a = await ExpertNodeProcess.StartAtAsync(dir, "all", $"{Programs.PrivateLoopbackHost()}:{port}");
        await using var b = await ExpertNodeProcess.StartAtAsync(dir, "all", $"{Programs.PrivateLoopbackHost()}:{port}");
        await using var c = await ExpertNodeProcess.StartAtAsync(dir, "all", $"{Programs.PrivateLoopbackHost()}:{port}");
        try
        {
            Slice(api, "s1", (a, true));
            await using var gateway = await GatewayServer.StartForAsync(dir, "--expert-discovery", $"k8s://{Ns}/{Service}", "--kubeconfig", kubeconfig);
            await gateway.WaitReadyAsync();
            Assert.Equal([a.Address.ToString()], await RoutedAsync(gateway));

            using var stop = new CancellationTokenSource();
            var answers = new System.Collections.Concurrent.ConcurrentQueue<JsonElement>();
            var traffic = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested) answers.Enqueue(await gateway.PostJsonAsync("/v1/completions", request));
            });

            Slice(api, "s1", (a, true), (b, true));
            await WaitRoutedAsync(gateway, [a, b], "b joins");
            Slice(api, "s1", (a, false), (b, true));
            await WaitRoutedAsync(gateway, [b], "a, not ready, leaves routing");
            await a.DisposeAsync();
            Slice(api, "s1", (b, true));
            Slice(api, "s2", (c, true));
            await WaitRoutedAsync(gateway, [b, c], "c joins from a second slice");
            using (var client = api.Client()) await client.DiscoveryV1.DeleteNamespacedEndpointSliceAsync("s1", Ns);
            await WaitRoutedAsync(gateway, [c], "the first slice deleted");
            var served = answers.Count;
            await Eventually.HoldsAsync(() => Task.FromResult(answers.Count > served), "a request served by c alone");

            // The API server goes away: the known nodes stay and the gateway keeps serving.
            await api.DisposeAsync();
            await gateway.WaitForMetricAsync("moemesh_expert_discovery_up", v => v == 0, "discovery down");
            served = answers.Count;
            await Eventually.HoldsAsync(() => Task.FromResult(answers.Count > served), "a request served without the API server");
            await stop.CancelAsync();
            await traffic;

            Assert.All(answers, answer => Completions.AssertSame(expected, answer));
            Assert.Equal([c.Address.ToString()], await RoutedAsync(gateway));
            Assert.True(await gateway.MetricAsync("moemesh_expert_discovery_updates_total") >= 5);
        }
        finally
        {
            await a.DisposeAsync();
            File.Delete(kubeconfig);
        }
    }

    [Fact]
    public void ReadyAddresses_SkipNotReadyAndTerminatingEndpoints_CountPodsOnce_AndBracketIPv6()
    {
        var slices = new[]
        {
            k8s.KubernetesJson.Deserialize<k8s.Models.V1EndpointSlice>("""
                {"addressType":"IPv4","ports":[{"name":"metrics","port":9100},{"name":"http","port":9000}],"endpoints":[
                  {"addresses":["10.0.0.2"],"conditions":{"ready":true}},
                  {"addresses":["10.0.0.1"]},
                  {"addresses":["10.0.0.3"],"conditions":{"ready":false}},
                  {"addresses":["10.0.0.4"],"conditions":{"ready":true,"terminating":true}},
                  {"addresses":["10.0.0.6"],"targetRef":{"kind":"Pod","name":"m-experts-6"}}]}
                """),
            k8s.KubernetesJson.Deserialize<k8s.Models.V1EndpointSlice>("""
                {"addressType":"IPv6","ports":[{"port":9000}],"endpoints":[
                  {"addresses":["fd00::5"],"conditions":{"ready":true}},
                  {"addresses":["fd00::6"],"targetRef":{"kind":"Pod","name":"m-experts-6"}}]}
                """),
        };
        // m-experts-6 is in both families' slices (dual-stack): once, by its IPv4 address.
        Assert.Equal(["http://10.0.0.1:9000/", "http://10.0.0.2:9000/", "http://10.0.0.6:9000/", "http://[fd00::5]:9000/"],
            EndpointSliceDiscovery.ReadyAddresses(slices).Select(u => u.ToString()));
    }

    [Theory]
    [InlineData("k8s://llm/m-experts", true)]
    [InlineData("k8s://llm", false)]
    [InlineData("http://llm/m-experts", false)]
    [InlineData("k8s://LLM/m-experts", false)]
    public void DiscoveryTarget_IsANamespaceAndAService(string text, bool valid)
    {
        if (valid) Assert.Equal(text, ExpertDiscoveryTarget.Parse(text).ToString());
        else Assert.Throws<FormatException>(() => ExpertDiscoveryTarget.Parse(text));
    }

    private static async Task<string[]> RoutedAsync(GatewayServer gateway) =>
        JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/routing")).RootElement.GetProperty("nodes").EnumerateArray()
            .Select(n => n.GetProperty("address").GetString()!).Order().ToArray();

    private static Task WaitRoutedAsync(GatewayServer gateway, ExpertNodeProcess[] nodes, string what) =>
        Eventually.HoldsAsync(() => RoutedAsync(gateway), r => r.SequenceEqual(nodes.Select(n => n.Address.ToString()).Order()), what);

    /// <summary>Writes an EndpointSlice of the expert Service as the EndpointSlice controller keeps it: addresses, readiness, the shared port.</summary>
    private static void Slice(TestApiServer api, string name, params (ExpertNodeProcess Node, bool Ready)[] endpoints)
    {
        var type = api.Type("endpointslices");
        var body = new JsonObject
        {
            ["apiVersion"] = "discovery.k8s.io/v1",
            ["kind"] = "EndpointSlice",
            ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = Ns, ["labels"] = new JsonObject { ["kubernetes.io/service-name"] = Service } },
            ["addressType"] = "IPv4",
            ["endpoints"] = new JsonArray(endpoints.Select(e => (JsonNode)new JsonObject
            {
                ["addresses"] = new JsonArray(e.Node.Address.Host),
                ["conditions"] = new JsonObject { ["ready"] = e.Ready, ["serving"] = true, ["terminating"] = false },
            }).ToArray()),
            ["ports"] = new JsonArray(new JsonObject { ["name"] = "http", ["port"] = endpoints[0].Node.Address.Port, ["protocol"] = "TCP" }),
        };
        if (api.Store.Get(type, Ns, name) is null) api.Store.Create(type, Ns, body);
        else api.Store.Patch(type, Ns, name, o => o["endpoints"] = body["endpoints"]!.DeepClone(), status: false);
    }
}
