using System.Diagnostics;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;
using TorchSharp;

namespace MoeMesh.Bench;

/// <summary>
/// Long prompts on the benchmark model, attention read in tiles (the engine's default) against attention over the
/// whole context in one piece (one tile: what the engine did before), in one run: prefill throughput of prompts of
/// each length in chunks of 512 tokens (the gateway's default step), decode at one sequence after the prompt, and
/// the peak resident memory the prefill added beyond the KV cache it filled.
/// </summary>
public sealed class LongContextBenchmark(string cacheDir, int decodeTokens, int[] lengths, int rounds)
{
    private const int ChunkTokens = 512;

    public void Run()
    {
        Console.WriteLine($"threads: {torch.get_num_threads()}, cores: {Environment.ProcessorCount}");
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        Console.WriteLine($"model: hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, {config.NumAttentionHeads} heads, kv_lora_rank {config.KvLoraRank}, chunks of {ChunkTokens} tokens");
        var model = DeepSeekModel.Load(dir, ComputeOptions.Cpu);
        var kvBytes = (long)(lengths.Max() + decodeTokens + 64) * config.NumHiddenLayers * config.LatentCacheDim * 4;
        using var engine = new LlmEngine(model, new EngineOptions { KvCacheBytes = kvBytes, MaxBatchTokens = ChunkTokens, PrefixCaching = false }, null, null);
        var kvPerToken = engine.Cache.BytesPerToken;
        (string Name, int? Tile)[] variants = [("tiled", null), ("whole", int.MaxValue)];
        var results = new Dictionary<(string, int), List<(double Prefill, double Decode, double ExtraMb)>>();
        for (var round = 0; round < rounds; round++)
        {
            var order = round % 2 == 0 ? variants : variants.Reverse().ToArray();
            foreach (var n in lengths)
                foreach (var (name, tile) in order)
                {
                    model.AttentionTileTokens = tile;
                    var r = Measure(engine, config, n, kvPerToken, seed: round * 100 + n);
                    Console.WriteLine($"round {round}, {n} tokens, {name}: prefill {r.Prefill:F0} tokens/s, decode {r.Decode:F1} tokens/s, extra peak {r.ExtraMb:F0} MB");
                    (results.TryGetValue((name, n), out var list) ? list : results[(name, n)] = []).Add(r);
                }
        }
        Console.WriteLine($"medians of {rounds} rounds; extra peak = peak resident memory during the prefill minus resident memory before it and the KV cache it wrote ({kvPerToken} bytes per token)");
        foreach (var n in lengths)
        {
            var t = results[("tiled", n)];
            var w = results[("whole", n)];
            double M(List<(double, double, double)> l, Func<(double P, double D, double E), double> f) => Stats.Median(l.Select(f).ToList());
            Console.WriteLine($"{n,6} tokens: prefill tiled {M(t, x => x.P):F0} / whole {M(w, x => x.P):F0} tokens/s = {M(t, x => x.P) / M(w, x => x.P):F2}x; " +
                $"decode after it tiled {M(t, x => x.D):F1} / whole {M(w, x => x.D):F1} tokens/s = {M(t, x => x.D) / M(w, x => x.D):F2}x; " +
                $"extra peak tiled {M(t, x => x.E):F0} MB / whole {M(w, x => x.E):F0} MB");
        }
    }

    private (double Prefill, double Decode, double ExtraMb) Measure(LlmEngine engine, ModelConfig c, int n, long kvPerToken, int seed)
    {
        GC.Collect();
        var before = ResetPeak();
        var seq = engine.Add(GatewayLoad.RandomPrompt(n, c.VocabSize, seed), new SamplingParams { MaxTokens = decodeTokens + 1, Temperature = 0, IgnoreEos = true });
        var sw = Stopwatch.StartNew();
        while (seq.OutputLength == 0) engine.Step();
        var prefill = n / sw.Elapsed.TotalSeconds;
        var extra = (PeakBytes() - before - (double)n * kvPerToken) / 1e6;
        sw.Restart();
        while (!seq.IsFinished) engine.Step();
        return (prefill, decodeTokens / sw.Elapsed.TotalSeconds, extra);
    }

    /// <summary>
    /// Returns freed heap to the system (glibc keeps large freed blocks, which would hide the next prefill's peak
    /// inside memory already resident), resets the kernel's peak resident set of this process (clear_refs 5) and
    /// returns the resident bytes now.
    /// </summary>
    private static long ResetPeak()
    {
        MallocTrim(0);
        File.WriteAllText("/proc/self/clear_refs", "5");
        return Stats.StatusBytes("VmRSS:");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static long PeakBytes() => Stats.StatusBytes("VmHWM:");


}
