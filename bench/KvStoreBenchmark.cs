using System.Diagnostics;
using System.Net.Http.Json;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Testing;

namespace MoeMesh.Bench;

/// <summary>
/// The shared KV store's benchmark, all figures from one run with a real local redis-server: time to first
/// token of a 2048-token prompt cold, with a local prefix hit, and with a Redis hit written by another
/// gateway process; bytes per page; Redis read and write throughput; decode throughput at 32 sequences with
/// --kv-store redis against memory.
/// </summary>
public sealed class KvStoreBenchmark(string cacheDir, int decodeTokens)
{
    private const int PromptTokens = 2048;
    private const int Rounds = 5;
    private const int PageSize = 16;

    public async Task RunAsync()
    {
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        Console.WriteLine($"model: {dir} ({config.NumHiddenLayers} layers, latent {config.KvLoraRank} + rope {config.QkRopeHeadDim}, fp32 cache), cores: {Environment.ProcessorCount}");
        await using var redis = await RedisServer.StartAsync();
        string[] gatewayArgs = ["--kv-store", redis.Url, "--kv-cache-bytes", (1L << 30).ToString(), "--max-batch-tokens", "1024"];
        await TimeToFirstTokenAsync(dir, config.VocabSize, gatewayArgs);
        await DecodeAsync(dir, config.VocabSize, redis.Url);
    }

    private async Task TimeToFirstTokenAsync(string dir, int vocab, string[] gatewayArgs)
    {
        await using var writer = await GatewayProcess.StartAsync(dir, gatewayArgs);
        await using var reader = await GatewayProcess.StartAsync(dir, gatewayArgs);
        foreach (var g in new[] { writer, reader }) await g.WaitForMetricAsync("moemesh_kv_store_up", v => v == 1, "connected to Redis");
        var cold = new List<double>();
        var local = new List<double>();
        var shared = new List<double>();
        for (var round = 0; round < Rounds; round++)
        {
            // Cold: a prompt no gateway has seen (the Redis lookup misses). Local: the same prompt again.
            var fresh = GatewayLoad.RandomPrompt(PromptTokens, vocab, 1000 + round);
            cold.Add(await FirstTokenSecondsAsync(reader, fresh));
            local.Add(await FirstTokenSecondsAsync(reader, fresh));
            // Shared: computed by the other process, then sent to this one once its pages are in Redis.
            var other = GatewayLoad.RandomPrompt(PromptTokens, vocab, 2000 + round);
            var stored = await StoredPagesAsync(writer);
            await FirstTokenSecondsAsync(writer, other);
            await Eventually.HoldsAsync(() => StoredPagesAsync(writer), v => v >= stored + (PromptTokens - 1) / PageSize, "the writer's pages in Redis");
            shared.Add(await FirstTokenSecondsAsync(reader, other));
        }
        Console.WriteLine($"time to first token, {PromptTokens}-token prompt (median of {Rounds}): cold {Stats.Median(cold) * 1e3:F0} ms [{Join(cold)}], " +
            $"local prefix hit {Stats.Median(local) * 1e3:F0} ms [{Join(local)}], Redis hit from another gateway {Stats.Median(shared) * 1e3:F0} ms [{Join(shared)}]");
        Console.WriteLine($"ratio cold / Redis hit: {Stats.Median(cold) / Stats.Median(shared):F1}x; cold / local hit: {Stats.Median(cold) / Stats.Median(local):F1}x");

        var hitPages = await reader.MetricAsync("moemesh_kv_store_hit_pages_total") ?? 0;
        var readBytes = await reader.MetricAsync("moemesh_kv_store_read_bytes_total") ?? 0;
        var readSeconds = await reader.MetricAsync("moemesh_kv_store_read_seconds_sum") ?? 0;
        var writtenBytes = await writer.MetricAsync("moemesh_kv_store_written_bytes_total") ?? 0;
        var writeSeconds = await writer.MetricAsync("moemesh_kv_store_write_seconds_sum") ?? 0;
        Console.WriteLine($"bytes per page: {readBytes / hitPages:F0} ({hitPages} pages read)");
        Console.WriteLine($"Redis read: {readBytes / readSeconds / 1e6:F0} MB/s over its round trips; write: {writtenBytes / writeSeconds / 1e6:F0} MB/s over its round trips");
    }

    private async Task DecodeAsync(string dir, int vocab, string redisUrl)
    {
        // Both gateways in this process, used in turn (ABBA rounds, so that a drift of the VM weighs on both alike);
        // fresh prompts each round, so that the Redis gateway writes its decode pages every round.
        await using var memory = await GatewayLoad.StartAsync(dir, vocab);
        await using var shared = await GatewayLoad.StartAsync(dir, vocab, "--kv-store", redisUrl, "--kv-store-prefix", "decode");
        await memory.DecodeAsync(32, 4, seed: 1);
        await shared.DecodeAsync(32, 4, seed: 1);
        var m = new List<double>();
        var r = new List<double>();
        for (var round = 0; round < 6; round++)
        {
            var seed = 10_000 + 100 * round;
            foreach (var useRedis in round % 2 == 0 ? new[] { false, true } : [true, false])
                (useRedis ? r : m).Add(await (useRedis ? shared : memory).DecodeAsync(32, decodeTokens, seed));
        }
        var written = await shared.MetricAsync("moemesh_kv_store_written_pages_total");
        var dropped = await shared.MetricAsync("moemesh_kv_store_write_dropped_pages_total");
        Console.WriteLine($"decode, 32 sequences x {decodeTokens} tokens (median of 6): memory {Stats.Median(m):F1} tokens/s [{Join(m, "F1", 1)}], " +
            $"redis {Stats.Median(r):F1} tokens/s [{Join(r, "F1", 1)}]; ratio redis / memory: {Stats.Median(r) / Stats.Median(m):F3} ({written} pages written, {dropped} dropped)");
    }

    private static async Task<double> StoredPagesAsync(GatewayProcess g) => await g.MetricAsync("moemesh_kv_store_written_pages_total{result=\"stored\"}") ?? 0;

    /// <summary>A whole request generating one token: its prefill plus one sampling step.</summary>
    private static async Task<double> FirstTokenSecondsAsync(GatewayProcess g, int[] prompt)
    {
        var sw = Stopwatch.StartNew();
        using var response = await g.Http.PostAsJsonAsync("/v1/completions", new { prompt, max_tokens = 1, temperature = 0, ignore_eos = true });
        response.EnsureSuccessStatusCode();
        await response.Content.ReadAsStringAsync();
        return sw.Elapsed.TotalSeconds;
    }


    private static string Join(List<double> values, string format = "F0", double scale = 1e3) => string.Join(", ", values.Select(v => (v * scale).ToString(format)));
}
