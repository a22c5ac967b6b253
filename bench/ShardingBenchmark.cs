using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using MoeMesh.Testing;

namespace MoeMesh.Bench;

/// <summary>
/// The expert-sharding issue's benchmark, all figures from one run: decode tokens/s at 1 and 32
/// sequences through the gateway's HTTP API with the experts in-process and spread over 2 and 4
/// expert-node processes on loopback; dispatch bytes per token per MoE layer; dispatch round trip.
/// </summary>
public sealed class ShardingBenchmark(string cacheDir, int decodeTokens, int? nodeThreads, int? gatewayThreads, string? nodeCpus)
{
    private const int PrefillRequests = 8;
    private const int PrefillPromptTokens = 128;

    private string[] NodeArgs => nodeThreads is { } t ? ["--threads", t.ToString()] : [];

    /// <summary>Median round trip of one-token dispatches (top-k pairs) to an idle node, sent one after another.</summary>
    private static async Task IdleRoundTripAsync(string dir, ModelConfig config, ExpertNodeProcess node)
    {
        var layer = Enumerable.Range(0, config.NumHiddenLayers).First(config.IsMoeLayer);
        var held = ExpertSet.Parse(node.Experts, config.NRoutedExperts).Take(config.NumExpertsPerTok).ToArray();
        var states = new byte[config.HiddenSize * sizeof(float)];
        var message = DispatchCodec.Encode(new DispatchRequest(ModelFingerprint.Of(dir), layer, 1, config.HiddenSize, WireDType.Float32,
            held.Select(_ => 0).ToArray(), held, held.Select(_ => 1f / held.Length).ToArray(), states));
        using var http = new HttpClient { BaseAddress = node.Address };
        var times = new List<double>();
        for (var i = 0; i < 220; i++)
        {
            var content = new ByteArrayContent(message);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(DispatchCodec.ContentType);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            using var response = await http.PostAsync("/v1/dispatch", content);
            await response.Content.ReadAsByteArrayAsync();
            if (i >= 20) times.Add(sw.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        var metrics = (await http.GetStringAsync("/metrics")).Split('\n');
        double Metric(string name) => metrics.Where(l => l.StartsWith(name + " ", StringComparison.Ordinal)).Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).Sum();
        var compute = Metric("moemesh_expert_compute_seconds_sum") / Metric("moemesh_expert_compute_seconds_count");
        Console.WriteLine($"idle node, 1 token x {held.Length} experts: median round trip {times[times.Count / 2]:F2} ms, p90 {times[times.Count * 9 / 10]:F2} ms ({message.Length} bytes); node compute mean {compute * 1e3:F2} ms");
    }

    /// <summary>One way of serving the model: a gateway and the nodes it dispatches to, measured across rounds.</summary>
    private sealed class Deployment(string name, GatewayLoad gateway)
    {
        public string Name => name;
        public GatewayLoad Gateway => gateway;
        public List<double> Decode1 { get; } = [];
        public List<double> Decode32 { get; } = [];
        public List<double> Prefill { get; } = [];
        public Dictionary<string, double> Before { get; } = new();
    }

    private static readonly string[] Counters =
    [
        "moemesh_expert_dispatch_bytes_total{direction=\"sent\"}", "moemesh_prompt_tokens_total ", "moemesh_generation_tokens_total ",
        "moemesh_expert_dispatch_seconds_sum", "moemesh_expert_dispatch_seconds_count", "moemesh_expert_wait_seconds_total",
    ];

    public async Task RunAsync()
    {
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var moeLayers = Enumerable.Range(0, config.NumHiddenLayers).Count(config.IsMoeLayer);
        var e = config.NRoutedExperts;
        string[] halves = [$"0-{e / 2 - 1}", $"{e / 2}-{e - 1}"];
        var quarters = Enumerable.Range(0, 4).Select(i => $"{i * e / 4}-{(i + 1) * e / 4 - 1}").ToArray();
        var defaultThreads = TorchSharp.torch.get_num_threads();
        Console.WriteLine($"model: {dir}; {moeLayers} MoE layers, {e} experts; {Environment.ProcessorCount} cores shared by the gateways, their clients and every node");
        Console.WriteLine($"libtorch threads: in-process gateway {defaultThreads}, gateways with nodes {gatewayThreads ?? defaultThreads}, each node {nodeThreads?.ToString() ?? "one per core"}; nodes on CPUs {nodeCpus ?? "any"}");

        // Every deployment stays up for the whole run and they are measured in turn, round after round,
        // so that the shared VM's drift hits all of them alike. A gateway's engine thread takes libtorch's
        // thread count when it first computes, so the in-process one is warmed up before the count changes.
        var nodes = new List<ExpertNodeProcess>();
        var deployments = new List<Deployment>();
        try
        {
            deployments.Add(new Deployment("in-process", await StartAsync(dir, config, [])));
            TorchSharp.torch.set_num_threads(gatewayThreads ?? defaultThreads);
            foreach (var (label, specs) in new[] { ("2 nodes", halves), ("4 nodes", quarters) })
            {
                var group = new List<ExpertNodeProcess>();
                foreach (var spec in specs) group.Add(await ExpertNodeProcess.StartPinnedAsync(nodeCpus, dir, spec, 0, NodeArgs));
                nodes.AddRange(group);
                await IdleRoundTripAsync(dir, config, group[0]);
                string[] nodeArgs = ["--expert-nodes", string.Join(",", group.Select(n => n.Address))];
                deployments.Add(new Deployment(label, await StartAsync(dir, config, nodeArgs)));
                deployments.Add(new Deployment($"{label}, no overlap", await StartAsync(dir, config, [.. nodeArgs, "--micro-batches", "1"])));
            }
            foreach (var d in deployments)
                foreach (var counter in Counters) d.Before[counter] = await d.Gateway.MetricAsync(counter);
            var busy = deployments.ToDictionary(d => d.Name, _ => TimeSpan.Zero);
            for (var round = 0; round < Rounds; round++)
            {
                foreach (var d in deployments)
                {
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    d.Decode1.Add(await d.Gateway.DecodeAsync(1, decodeTokens));
                    d.Decode32.Add(await d.Gateway.DecodeAsync(32, decodeTokens));
                    d.Prefill.Add(await d.Gateway.PrefillAsync(PrefillRequests, PrefillPromptTokens, 1000 * round));
                    busy[d.Name] += sw.Elapsed;
                    Console.WriteLine($"round {round + 1}: {d.Name,-19} decode 1 seq {d.Decode1[^1],6:F1}, 32 seqs {d.Decode32[^1],6:F1} tokens/s; prefill {PrefillRequests} x {PrefillPromptTokens}: {d.Prefill[^1],6:F1} tokens/s");
                }
            }
            foreach (var d in deployments.Skip(1))
            {
                var delta = new Dictionary<string, double>();
                foreach (var counter in Counters) delta[counter] = await d.Gateway.MetricAsync(counter) - d.Before[counter];
                var tokens = delta[Counters[1]] + delta[Counters[2]];
                var count = delta[Counters[4]];
                Console.WriteLine($"{d.Name,-19} dispatch: {delta[Counters[0]] / tokens / moeLayers:F0} bytes sent per token per MoE layer; {count:F0} dispatches, " +
                    $"mean round trip {delta[Counters[3]] / count * 1e3:F2} ms; engine blocked on replies {delta[Counters[5]] / busy[d.Name].TotalSeconds:P0} of its busy time");
            }
            var baseline = deployments[0];
            foreach (var d in deployments)
                Console.WriteLine($"mean {d.Name,-19} decode 1 seq {d.Decode1.Average(),6:F1}, 32 seqs {d.Decode32.Average(),6:F1}, prefill {d.Prefill.Average(),6:F1} tokens/s" +
                    (d == baseline ? "" : $"; vs in-process: {d.Decode1.Average() / baseline.Decode1.Average():F3}, {d.Decode32.Average() / baseline.Decode32.Average():F3}, {d.Prefill.Average() / baseline.Prefill.Average():F3}"));
            foreach (var n in new[] { "2 nodes", "4 nodes" })
            {
                var (on, off) = (deployments.First(d => d.Name == n), deployments.First(d => d.Name == $"{n}, no overlap"));
                Console.WriteLine($"overlap gain, {n} (micro-batches 2 / 1): decode 32 seqs {on.Decode32.Average() / off.Decode32.Average():F3}, prefill {on.Prefill.Average() / off.Prefill.Average():F3}");
            }
        }
        finally
        {
            foreach (var d in deployments) await d.Gateway.DisposeAsync();
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    private const int Rounds = 2;

    private static async Task<GatewayLoad> StartAsync(string dir, ModelConfig config, string[] args)
    {
        var gateway = await GatewayLoad.StartAsync(dir, config.VocabSize, args);
        await gateway.DecodeAsync(2, 4); // warm-up: connections, first-call costs, the engine thread's libtorch threads
        return gateway;
    }
}
