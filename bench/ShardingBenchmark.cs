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
public sealed class ShardingBenchmark(string cacheDir, int decodeTokens, int? nodeThreads, int? gatewayThreads)
{
    private const int PrefillRequests = 8;
    private const int PrefillPromptTokens = 128;

    private sealed record Layout(string Name, string[] Nodes, string[] GatewayArgs);

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

    public async Task RunAsync()
    {
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var moeLayers = Enumerable.Range(0, config.NumHiddenLayers).Count(config.IsMoeLayer);
        var e = config.NRoutedExperts;
        var quarters = Enumerable.Range(0, 4).Select(i => $"{i * e / 4}-{(i + 1) * e / 4 - 1}").ToArray();
        Layout[] layouts =
        [
            new("in-process", [], []),
            new("2 nodes", [$"0-{e / 2 - 1}", $"{e / 2}-{e - 1}"], []),
            new("4 nodes", quarters, []),
            new("4 nodes, no overlap", quarters, ["--micro-batches", "1"]),
        ];
        Console.WriteLine($"model: {dir}; {moeLayers} MoE layers, {e} experts; {Environment.ProcessorCount} cores shared by the gateway, its clients and every node");
        var rates = new Dictionary<(string, int), double>();
        var defaultThreads = TorchSharp.torch.get_num_threads();
        Console.WriteLine($"libtorch threads: in-process gateway {defaultThreads}, gateway with nodes {gatewayThreads ?? defaultThreads}, each node {nodeThreads?.ToString() ?? "one per core"}");
        foreach (var layout in layouts)
        {
            var nodes = new List<ExpertNodeProcess>();
            try
            {
                TorchSharp.torch.set_num_threads(layout.Nodes.Length > 0 ? gatewayThreads ?? defaultThreads : defaultThreads);
                foreach (var spec in layout.Nodes) nodes.Add(await ExpertNodeProcess.StartAsync(dir, spec, 0, NodeArgs));
                if (nodes.Count > 0) await IdleRoundTripAsync(dir, config, nodes[0]);
                string[] args = nodes.Count == 0 ? [] : ["--expert-nodes", string.Join(",", nodes.Select(n => n.Address)), .. layout.GatewayArgs];
                await using var gateway = await GatewayLoad.StartAsync(dir, config.VocabSize, args);
                await gateway.DecodeAsync(2, 4); // warm-up: connections, first-call costs
                var bytesBefore = await gateway.MetricAsync("moemesh_expert_dispatch_bytes_total{direction=\"sent\"}");
                var promptBefore = await gateway.MetricAsync("moemesh_prompt_tokens_total ");
                var genBefore = await gateway.MetricAsync("moemesh_generation_tokens_total ");
                var rttSumBefore = await gateway.MetricAsync("moemesh_expert_dispatch_seconds_sum");
                var rttCountBefore = await gateway.MetricAsync("moemesh_expert_dispatch_seconds_count");
                foreach (var c in new[] { 1, 32 })
                {
                    rates[(layout.Name, c)] = await gateway.DecodeAsync(c, decodeTokens);
                    Console.WriteLine($"{layout.Name,-19} decode, {c,2} sequences: {rates[(layout.Name, c)]:F1} tokens/s");
                }
                var prefill = new List<double>();
                for (var round = 0; round < 3; round++) prefill.Add(await gateway.PrefillAsync(PrefillRequests, PrefillPromptTokens, 1000 * round));
                rates[(layout.Name, 0)] = prefill.Average();
                Console.WriteLine($"{layout.Name,-19} prefill, {PrefillRequests} x {PrefillPromptTokens} tokens: {prefill.Average():F1} tokens/s [{string.Join(", ", prefill.Select(p => p.ToString("F1")))}]");
                if (nodes.Count == 0) continue;
                var tokens = await gateway.MetricAsync("moemesh_prompt_tokens_total ") - promptBefore + await gateway.MetricAsync("moemesh_generation_tokens_total ") - genBefore;
                var bytes = await gateway.MetricAsync("moemesh_expert_dispatch_bytes_total{direction=\"sent\"}") - bytesBefore;
                var count = await gateway.MetricAsync("moemesh_expert_dispatch_seconds_count") - rttCountBefore;
                var rtt = (await gateway.MetricAsync("moemesh_expert_dispatch_seconds_sum") - rttSumBefore) / count;
                Console.WriteLine($"{layout.Name,-19} dispatch: {bytes / tokens / moeLayers:F0} bytes sent per token per MoE layer; {count:F0} dispatches, mean round trip {rtt * 1e3:F2} ms");
            }
            finally
            {
                foreach (var n in nodes) await n.DisposeAsync();
            }
        }
        foreach (var layout in layouts.Skip(1))
            Console.WriteLine($"ratio {layout.Name} / in-process: decode 1 seq {rates[(layout.Name, 1)] / rates[("in-process", 1)]:F3}, " +
                $"32 seqs {rates[(layout.Name, 32)] / rates[("in-process", 32)]:F3}; prefill {rates[(layout.Name, 0)] / rates[("in-process", 0)]:F3}");
        Console.WriteLine($"overlap gain, 4 nodes (micro-batches 2 / 1): decode 32 seqs {rates[("4 nodes", 32)] / rates[("4 nodes, no overlap", 32)]:F3}, " +
            $"prefill {rates[("4 nodes", 0)] / rates[("4 nodes, no overlap", 0)]:F3}");
    }
}
