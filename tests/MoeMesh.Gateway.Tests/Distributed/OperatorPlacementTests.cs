using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;
using MoeMesh.Testing.KubeApi;
using MoeMesh.Testing.Operator;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>
/// The operator's placement rounds end to end: the real operator reads the routed load of a real gateway (found
/// through the test API server's EndpointSlices), plans, and rolls the placement out make-before-break through
/// the placement ConfigMap, which the test copies into the real nodes' --placement files as the kubelet would;
/// the gateway finds the nodes by --expert-discovery. No request fails and every answer equals the in-process one.
/// </summary>
public sealed class OperatorPlacementTests
{
    private static readonly string[] Prompts = ["The experts of a mixture", "Once upon a time", "def main():"];

    [Fact]
    public async Task PlacementRounds_RollOutThroughTheConfigMap_WhileServing()
    {
        var expected = await ExpectedAsync();
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        var n = await DeployAsync(cluster, "m", new ExpertTierSpec { Nodes = 3, MinReplicasPerExpert = 1, RedundantSlots = 6 },
            new ScalingSpec { Placement = new PlacementSpec { IntervalSeconds = 2, TargetImbalance = 1.0, MinGain = 0 } });
        await using var kubelet = new Kubelet(cluster, n, 3, drainSeconds: "2");
        await kubelet.StartAsync(0, 1, 2);
        await using var gateway = await StartGatewayAsync(cluster, n);

        using var stop = new CancellationTokenSource();
        var answers = new ConcurrentQueue<(string Prompt, JsonElement Answer)>();
        var traffic = Task.Run(async () =>
        {
            for (var k = 0; !stop.IsCancellationRequested; k++)
            {
                var prompt = Prompts[k % Prompts.Length];
                var response = await gateway.Http.PostAsync("/v1/completions", Json(DistributedGenerationTests.Request(6, prompt)));
                response.EnsureSuccessStatusCode();
                answers.Enqueue((prompt, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone()));
            }
        });
        await Eventually.HoldsAsync(() => Task.FromResult((Done: cluster.HasEvent("default", "m", "PlacementRebalanced"),
                Events: string.Join(" | ", cluster.Events("default", "m").Select(e => $"{e["reason"]}: {e["message"]}").TakeLast(6)),
                Generation: cluster.Get("configmaps", "default", n.Placement)?["metadata"]?["annotations"]?[Names.PlacementGenerationAnnotation]?.ToString(),
                Operator: op.Tail())),
            // Two phases, each waiting on three nodes and the gateway: a generous bound for a loaded 2-core machine.
            r => r.Done, "a placement round rolled out", TimeSpan.FromMinutes(3));
        var served = answers.Count;
        await Eventually.HoldsAsync(() => Task.FromResult(answers.Count > served), "requests served on the new placement");
        await stop.CancelAsync();
        await traffic;

        Assert.All(answers, a => Completions.AssertSame(expected[a.Prompt], a.Answer));
        var rollout = cluster.Events("default", "m").Where(e => e["reason"]!.ToString() == "PlacementRollout").Select(e => e["message"]!.ToString()).ToArray();
        Assert.NotEmpty(rollout);
        var status = await cluster.GetAsync("default", "m");
        Assert.True(status.Status!.PlacementGeneration >= 2, $"placement generation {status.Status.PlacementGeneration}");
        // Explicit per-layer lists replaced the uniform shards, and every expert still has a holder on every layer.
        var data = cluster.Get("configmaps", "default", n.Placement)!["data"]!.AsObject();
        Assert.DoesNotContain(data, kv => kv.Value!.ToString().Contains("shard:", StringComparison.Ordinal));
    }

    /// <summary>
    /// The expert tier resized while requests stream: shrinking 3 -> 2, the operator first moves the leaving node's
    /// experts onto the two that stay and only then shrinks the StatefulSet (so the node can be killed without a
    /// request failing); growing back to 3, the new node starts empty and a filling round gives it experts.
    /// Rebalancing rounds are off (intervalSeconds 0): only the resizes move experts.
    /// </summary>
    [Fact]
    public async Task ExpertTierResized_DrainsBeforeItShrinks_AndFillsTheNewNode_WhileServing()
    {
        var expected = await ExpectedAsync();
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        var n = await DeployAsync(cluster, "r", new ExpertTierSpec { Nodes = 3, MinReplicasPerExpert = 1 }, new ScalingSpec { Placement = new PlacementSpec { IntervalSeconds = 0 } });
        (int Replicas, string Events, string Operator) Observe() => (
            cluster.Get("statefulsets", "default", n.Experts)?["spec"]?["replicas"]?.GetValue<int>() ?? 0,
            string.Join(" | ", cluster.Events("default", "r").Select(e => $"{e["reason"]}: {e["message"]}").TakeLast(8)),
            op.Tail());
        await using var kubelet = new Kubelet(cluster, n, 3);
        await kubelet.StartAsync(0, 1, 2);
        await using var gateway = await StartGatewayAsync(cluster, n);

        using var stop = new CancellationTokenSource();
        var answers = new ConcurrentQueue<(string Prompt, JsonElement Answer)>();
        var traffic = Task.Run(async () =>
        {
            for (var k = 0; !stop.IsCancellationRequested; k++)
            {
                var prompt = Prompts[k % Prompts.Length];
                var response = await gateway.Http.PostAsync("/v1/completions", Json(DistributedGenerationTests.Request(6, prompt)));
                Assert.True(response.IsSuccessStatusCode, $"request {k}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                answers.Enqueue((prompt, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone()));
            }
        });
        async Task ServedMoreAsync(string what)
        {
            var served = answers.Count;
            await Eventually.HoldsAsync(() => Task.FromResult((answers.Count, Traffic: traffic.IsFaulted ? traffic.Exception!.InnerException!.Message : "running")),
                r => r.Count > served || traffic.IsCompleted, what);
            if (traffic.IsFaulted) await traffic;
        }
        await ServedMoreAsync("requests served on three nodes");

        // Shrink: the StatefulSet keeps three nodes until the third holds nothing.
        await cluster.PatchSpecAsync("default", "r", """{"spec": {"experts": {"nodes": 2}}}""");
        await Eventually.HoldsAsync(() => Task.FromResult(Observe()), r => r.Replicas == 2, "the tier shrunk to two", TimeSpan.FromMinutes(3));
        Assert.Equal(0, await HeldAsync(kubelet.Nodes[2]!));
        Assert.True(cluster.HasEvent("default", "r", "PlacementRollout", "draining for expert nodes 3 -> 2"), Observe().Events);
        Assert.True(cluster.HasEvent("default", "r", "Drained", "hold no experts any more: the tier shrinks 3 -> 2"), Observe().Events);
        // The StatefulSet controller's part: the third pod goes away; requests keep being answered by the two.
        await kubelet.StopAsync(2);
        await ServedMoreAsync("requests served on two nodes");

        // Grow: the new node starts empty (nothing moves off the serving nodes first), then takes its share.
        await cluster.PatchSpecAsync("default", "r", """{"spec": {"experts": {"nodes": 3}}}""");
        await Eventually.HoldsAsync(() => Task.FromResult(Observe()), r => r.Replicas == 3, "the tier grown to three");
        await kubelet.StartAsync(2);
        await Eventually.HoldsAsync(() => Task.FromResult(Observe()), _ => cluster.HasEvent("default", "r", "PlacementRebalanced", "filling the new expert nodes"),
            "the new node filled", TimeSpan.FromMinutes(3));
        Assert.True(await HeldAsync(kubelet.Nodes[2]!) > 0);
        await ServedMoreAsync("requests served on three nodes again");
        await stop.CancelAsync();
        await traffic;
        Assert.All(answers, a => Completions.AssertSame(expected[a.Prompt], a.Answer));
    }

    /// <summary>
    /// The expert tier autoscaled end to end on the nodes' measured busy time: under traffic it grows from two nodes
    /// to three and the new node is filled; idle, it shrinks back, draining the third node first, so that it can be
    /// killed with every later request still answered exactly as in-process.
    /// </summary>
    [Fact]
    public async Task ExpertTierAutoscaled_GrowsUnderLoad_AndShrinksWhenIdle_WithoutLosingAnExpert()
    {
        var expected = await ExpectedAsync();
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a", "--scaling-interval-ms", "500");
        var n = await DeployAsync(cluster, "e", new ExpertTierSpec { MinNodes = 2, MaxNodes = 3, MinReplicasPerExpert = 1 }, new ScalingSpec
        {
            // The demo model's experts are tiny: steady traffic keeps its two nodes about 5% busy each here (less on a
            // loaded machine), five times the target; idle nodes are at 0.
            Experts = new ExpertScalingSpec { TargetBusy = 0.01 },
            StableWindowSeconds = 6, PanicWindowSeconds = 2, ScaleDownStabilizationSeconds = 6,
            Placement = new PlacementSpec { IntervalSeconds = 0 },
        });
        (int Replicas, string Decisions, string Events, string Operator) Observe() => (
            cluster.Get("statefulsets", "default", n.Experts)?["spec"]?["replicas"]?.GetValue<int>() ?? 0,
            cluster.Get("moedeployments", "default", "e")?["status"]?["decisions"]?.ToJsonString() ?? "",
            string.Join(" | ", cluster.Events("default", "e").Select(e => $"{e["reason"]}: {e["message"]}").TakeLast(8)),
            op.Tail());
        await using var kubelet = new Kubelet(cluster, n, 3);
        await kubelet.StartAsync(0, 1);
        await using var gateway = await StartGatewayAsync(cluster, n);

        var answers = new ConcurrentQueue<(string Prompt, JsonElement Answer)>();
        async Task AskAsync(string prompt)
        {
            var response = await gateway.Http.PostAsync("/v1/completions", Json(DistributedGenerationTests.Request(6, prompt)));
            Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            answers.Enqueue((prompt, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone()));
        }
        using var busy = new CancellationTokenSource();
        var traffic = Enumerable.Range(0, 4).Select(s => Task.Run(async () =>
        {
            for (var k = s; !busy.IsCancellationRequested; k++) await AskAsync(Prompts[k % Prompts.Length]);
        })).ToArray();

        // Busy: a third node. The test starts it once the StatefulSet asks for it, as the kubelet would.
        await Eventually.HoldsAsync(() => Task.FromResult(Observe()), r => r.Replicas == 3 || traffic.Any(t => t.IsFaulted), "a third expert node under load", TimeSpan.FromMinutes(3));
        if (traffic.FirstOrDefault(t => t.IsFaulted) is { } failed) await failed;
        await kubelet.StartAsync(2);
        await Eventually.HoldsAsync(() => Task.FromResult(Observe()), _ => cluster.HasEvent("default", "e", "PlacementRebalanced", "filling the new expert nodes"),
            "the new node filled", TimeSpan.FromMinutes(3));
        Assert.True(await HeldAsync(kubelet.Nodes[2]!) > 0);

        // Idle: back to two nodes, the third drained first.
        await busy.CancelAsync();
        await Task.WhenAll(traffic);
        await Eventually.HoldsAsync(() => Task.FromResult(Observe()), r => r.Replicas == 2, "back to two expert nodes", TimeSpan.FromMinutes(3));
        Assert.Equal(0, await HeldAsync(kubelet.Nodes[2]!));
        var status = await cluster.GetAsync("default", "e");
        Assert.Contains(status.Status!.Decisions!, d => d.Tier == "experts" && d.From == 2 && d.To == 3);
        Assert.Contains(status.Status!.Decisions!, d => d.Tier == "experts" && d.From == 3 && d.To == 2 && d.Reason.StartsWith("scale down: ", StringComparison.Ordinal));
        Assert.True(cluster.HasEvent("default", "e", "Drained", "the tier shrinks 3 -> 2"), Observe().Events);
        await kubelet.StopAsync(2);
        foreach (var p in Prompts) await AskAsync(p);
        Assert.All(answers, a => Completions.AssertSame(expected[a.Prompt], a.Answer));
    }

    /// <summary>The expert copies a node advertises, over all layers.</summary>
    private static async Task<int> HeldAsync(ExpertNodeProcess node)
    {
        using var http = new HttpClient { BaseAddress = node.Address };
        using var doc = JsonDocument.Parse(await http.GetStringAsync("/v1/experts"));
        return doc.RootElement.GetProperty("layers").EnumerateArray().Sum(l => l.GetProperty("experts").GetArrayLength());
    }

    private static StringContent Json(object body) => new(JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json");

    /// <summary>The in-process answers to the prompts: what every answer through the expert nodes must equal.</summary>
    private static async Task<Dictionary<string, JsonElement>> ExpectedAsync()
    {
        var expected = new Dictionary<string, JsonElement>();
        foreach (var p in Prompts) expected[p] = await GatewayServer.InProcessJsonAsync(GatewayServer.ModelDir, "/v1/completions", DistributedGenerationTests.Request(6, p));
        return expected;
    }

    /// <summary>Creates a MoeDeployment of the demo checkpoint with one gateway, and waits for its placement ConfigMap.</summary>
    private static async Task<Names> DeployAsync(Cluster cluster, string name, ExpertTierSpec experts, ScalingSpec scaling)
    {
        await cluster.CreateAsync(new MoeDeployment
        {
            Metadata = new() { Name = name, NamespaceProperty = "default" },
            Spec = new MoeDeploymentSpec
            {
                Model = new ModelSource { Path = "/demo", HostPath = new HostPathSource { Path = "/var/lib/moemesh" } },
                Gateway = new GatewayTierSpec { Replicas = 1 },
                Experts = experts,
                Scaling = scaling,
            },
        });
        var n = new Names("default", name);
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("configmaps", "default", n.Placement)), c => c is not null, "the placement ConfigMap");
        return n;
    }

    /// <summary>A real gateway discovering the expert nodes through the test API server, listed in its own Service's slice.</summary>
    private static async Task<GatewayProcess> StartGatewayAsync(Cluster cluster, Names n)
    {
        var gateway = await GatewayProcess.StartAsync(GatewayServer.ModelDir, "--expert-discovery", $"k8s://default/{n.Experts}", "--kubeconfig", cluster.Kubeconfig);
        cluster.SetEndpoints("default", n.Gateway, [new Cluster.Endpoint(gateway.Address.Host)], gateway.Address.Port);
        return gateway;
    }

    /// <summary>
    /// The kubelet's and the EndpointSlice controller's part for the expert StatefulSet: each pod's --placement file
    /// follows its key of the placement ConfigMap (synced in the background, written whole and renamed into place as
    /// the kubelet swaps a ConfigMap volume's files), pod i runs as a real expert node on its own loopback address,
    /// and the expert Service's slice lists the running ones.
    /// </summary>
    private sealed class Kubelet : IAsyncDisposable
    {
        private readonly Cluster _cluster;
        private readonly Names _n;
        private readonly string _drainSeconds;
        private readonly string[] _files;
        private readonly string[] _hosts;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _sync;

        public Kubelet(Cluster cluster, Names n, int pods, string drainSeconds = "1")
        {
            (_cluster, _n, _drainSeconds) = (cluster, n, drainSeconds);
            _files = Enumerable.Range(0, pods).Select(i => Path.Combine(cluster.TempDir, $"{n.ExpertPod(i)}.json")).ToArray();
            var port = Random.Shared.Next(20_000, 60_000);
            _hosts = _files.Select(_ => $"{Programs.PrivateLoopbackHost()}:{port}").ToArray();
            Nodes = new ExpertNodeProcess?[pods];
            Sync();
            _sync = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    Sync();
                    await Task.Delay(100);
                }
            });
        }

        public ExpertNodeProcess?[] Nodes { get; }

        /// <summary>Starts pods (their placement file must be there) and lists them in the expert Service's slice.</summary>
        public async Task StartAsync(params int[] ordinals)
        {
            foreach (var i in ordinals)
            {
                await Eventually.HoldsAsync(() => Task.FromResult(File.Exists(_files[i])), $"the placement file of {_n.ExpertPod(i)}");
                Nodes[i] = await ExpertNodeProcess.StartAtAsync(GatewayServer.ModelDir, "all", _hosts[i], "--placement", _files[i], "--drain-seconds", _drainSeconds);
            }
            Publish();
        }

        /// <summary>The pod goes away, as when the StatefulSet shrinks: stopped and taken out of the slice.</summary>
        public async Task StopAsync(int i)
        {
            await Nodes[i]!.DisposeAsync();
            Nodes[i] = null;
            Publish();
        }

        private void Publish()
        {
            var running = Nodes.Select((node, i) => (node, i)).Where(x => x.node is not null).ToArray();
            _cluster.SetEndpoints("default", _n.Experts, running.Select(x => new Cluster.Endpoint(x.node!.Address.Host, _n.ExpertPod(x.i))).ToArray(), running[0].node!.Address.Port);
        }

        private void Sync()
        {
            if (_cluster.Get("configmaps", "default", _n.Placement)?["data"] is not JsonObject data) return;
            for (var i = 0; i < _files.Length; i++)
                if (data[$"{_n.ExpertPod(i)}.json"]?.ToString() is { } doc && (!File.Exists(_files[i]) || File.ReadAllText(_files[i]) != doc))
                {
                    File.WriteAllText(_files[i] + ".tmp", doc);
                    File.Move(_files[i] + ".tmp", _files[i], overwrite: true);
                }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _sync;
            foreach (var node in Nodes) if (node is not null) await node.DisposeAsync();
            _stop.Dispose();
        }
    }
}
