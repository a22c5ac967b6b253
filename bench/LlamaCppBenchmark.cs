using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Export;
using TorchSharp;

namespace MoeMesh.Bench;

/// <summary>
/// MoeMesh against llama.cpp (LLamaSharp's CPU build) on the same weights: the benchmark model exported to GGUF in F16
/// and F32 by MoeMesh's own exporter. One run, alternating rounds (the order reversed every other round), medians:
/// decode at 1, 8 and 32 sequences (16-token prompts, greedy, streamed over MoeMesh's HTTP API from a gateway process
/// of its own); prefill of prompts of each length in chunks of 512 tokens (MoeMesh's from the gateway's own
/// time-to-first-token histogram, llama.cpp's timed around its calls) and one sequence decoding after the longest
/// prompt; the memory each engine added when it loaded and the gateway process's peak; and the weight bytes a
/// one-sequence decode step of MoeMesh reads, as a rate, against the machine's measured read bandwidth. MoeMesh runs in its own process because llama.cpp's worker threads, in this process,
/// take the cores a MoeMesh engine here would need (an engine here decoded one sequence at 33-37 tokens/s before
/// llama.cpp was loaded and 25-29 after); llama.cpp is called directly, without HTTP.
/// </summary>
public sealed class LlamaCppBenchmark(string cacheDir, int decodeTokens, int[] prefillLengths, int rounds, string[] gatewayArgs)
{
    private const int PromptTokens = 16;
    private const int Chunk = 512;
    private static readonly int[] Levels = [1, 8, 32];

    public async Task RunAsync()
    {
        // llama.cpp logs every load in detail: only its warnings and errors are shown.
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error) Console.Error.Write($"llama.cpp: {message}");
        });
        var threads = torch.get_num_threads();
        Console.WriteLine($"threads: {threads} (libtorch and llama.cpp), cores: {Environment.ProcessorCount}");
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        Console.WriteLine($"model: hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, {config.NRoutedExperts} experts of width {config.MoeIntermediateSize}, top {config.NumExpertsPerTok}, vocab {config.VocabSize}, BF16 on disk");
        var bandwidth = ReadBandwidth();
        Console.WriteLine($"memory read bandwidth (libtorch sum over 1 GiB, {threads} threads): {bandwidth / 1e9:F1} GB/s");

        var maxLength = prefillLengths.Append(Levels.Max() * (PromptTokens + decodeTokens)).Max() + Chunk;
        var engines = new List<IEngine>();
        foreach (var type in new[] { GgufType.F16, GgufType.F32 })
        {
            var path = Path.Combine(cacheDir, $"benchmark-seed1-{type.ToString().ToLowerInvariant()}.gguf");
            if (!File.Exists(path)) GgufExporter.Export(dir, path, type, Console.Error);
            engines.Add(Measured($"llama.cpp {type}", () => new LlamaCpp(path, threads, maxLength)));
        }
        await using var http = await GatewayLoad.StartProcessAsync(dir, config.VocabSize, ["--max-batch-tokens", Chunk.ToString(), .. gatewayArgs]);

        // A warm-up round for every engine, not counted: the gateway's first requests run through just-in-time compilation.
        foreach (var c in Levels)
        {
            await http.DecodeAsync(c, decodeTokens, 50);
            foreach (var e in engines) e.Decode(c, decodeTokens, 50);
        }
        var decode = new Dictionary<(string, int), List<double>>();
        var prefill = new Dictionary<(string, int), List<double>>();
        var decodeLong = new Dictionary<string, List<double>>();
        var longest = prefillLengths.Max();
        void Add<TKey>(Dictionary<TKey, List<double>> d, TKey key, double value) where TKey : notnull => (d.TryGetValue(key, out var l) ? l : d[key] = []).Add(value);
        for (var round = 0; round < rounds; round++)
        {
            // MoeMesh first in even rounds, last in odd ones.
            var moeFirst = round % 2 == 0;
            var order = moeFirst ? engines : Enumerable.Reverse(engines).ToList();
            foreach (var c in Levels)
            {
                if (moeFirst) Add(decode, ("MoeMesh", c), await http.DecodeAsync(c, decodeTokens, 100 + round * 64));
                foreach (var e in order) Add(decode, (e.Name, c), e.Decode(c, decodeTokens, 100 + round * 64));
                if (!moeFirst) Add(decode, ("MoeMesh", c), await http.DecodeAsync(c, decodeTokens, 100 + round * 64));
            }
            foreach (var n in prefillLengths)
            {
                // After the longest prompt, one sequence decodes too: decode speed at a long context.
                var tokens = n == longest ? decodeTokens : 1;
                var prompt = 7000 + round * 100 + n;
                async Task MoeMesh()
                {
                    var (p, d) = await http.PrefillThenDecodeAsync(n, tokens, prompt);
                    Add(prefill, ("MoeMesh", n), p);
                    if (tokens > 1) Add(decodeLong, "MoeMesh", d);
                }
                if (moeFirst) await MoeMesh();
                foreach (var e in order)
                {
                    var (p, d) = e.Prefill(GatewayLoad.RandomPrompt(n, config.VocabSize, prompt), tokens);
                    Add(prefill, (e.Name, n), p);
                    if (tokens > 1) Add(decodeLong, e.Name, d);
                }
                if (!moeFirst) await MoeMesh();
            }
            Console.WriteLine($"round {round}: " + string.Join("; ", decode.Where(kv => kv.Value.Count == round + 1).Select(kv => $"{kv.Key.Item1} x{kv.Key.Item2} {kv.Value[^1]:F1}")));
        }

        Console.WriteLine($"medians of {rounds} rounds, tokens/s; ratio = MoeMesh / llama.cpp");
        foreach (var c in Levels)
        {
            double M(string name) => Stats.Median(decode[(name, c)]);
            Console.WriteLine($"decode, {c,2} sequences: MoeMesh {M("MoeMesh"):F1}, llama.cpp F16 {M("llama.cpp F16"):F1}, F32 {M("llama.cpp F32"):F1}; " +
                $"ratio vs F16 {M("MoeMesh") / M("llama.cpp F16"):F2}x, vs F32 {M("MoeMesh") / M("llama.cpp F32"):F2}x");
        }
        foreach (var n in prefillLengths)
        {
            double M(string name) => Stats.Median(prefill[(name, n)]);
            Console.WriteLine($"prefill {n,5} tokens: MoeMesh {M("MoeMesh"):F0}, llama.cpp F16 {M("llama.cpp F16"):F0}, F32 {M("llama.cpp F32"):F0}; " +
                $"ratio vs F16 {M("MoeMesh") / M("llama.cpp F16"):F2}x, vs F32 {M("MoeMesh") / M("llama.cpp F32"):F2}x");
        }
        if (decodeLong.Count > 0)
        {
            double M(string name) => Stats.Median(decodeLong[name]);
            Console.WriteLine($"decode, 1 sequence after a {longest}-token prompt: MoeMesh {M("MoeMesh"):F1}, llama.cpp F16 {M("llama.cpp F16"):F1}, F32 {M("llama.cpp F32"):F1}; " +
                $"ratio vs F16 {M("MoeMesh") / M("llama.cpp F16"):F2}x, vs F32 {M("MoeMesh") / M("llama.cpp F32"):F2}x");
        }
        Console.WriteLine($"peak resident memory: MoeMesh gateway process {Stats.StatusBytes("VmHWM:", http.Pid) / 1e9:F2} GB (KV budget 1 GiB); " +
            $"this process (both llama.cpp models, F16 and F32, and the runs) {Stats.StatusBytes("VmHWM:") / 1e9:F2} GB");
        // The VM's bandwidth drifts: measured again at the end, the higher figure is the limit.
        bandwidth = Math.Max(bandwidth, ReadBandwidth());
        Console.WriteLine($"memory read bandwidth, the higher of the readings at the start and at the end: {bandwidth / 1e9:F1} GB/s");
        var active = ActiveWeightBytes(config, 4);
        var step = Stats.Median(decode[("MoeMesh", 1)]);
        Console.WriteLine($"one-sequence decode: MoeMesh reads {active / 1e6:F0} MB of float32 weights per step, {active * step / 1e9:F1} GB/s = {active * step / bandwidth:P0} of the measured bandwidth");
        foreach (var e in engines) e.Dispose();
    }

    private static T Measured<T>(string name, Func<T> load)
    {
        GC.Collect();
        var before = Resident();
        var sw = Stopwatch.StartNew();
        var engine = load();
        Console.WriteLine($"{name}: loaded in {sw.Elapsed.TotalSeconds:F1} s, resident memory +{(Resident() - before) / 1e6:F0} MB");
        return engine;
    }

    private static long Resident() => Stats.StatusBytes("VmRSS:");

    /// <summary>Bytes per second a libtorch sum reads from a 1 GiB float32 tensor (best of five).</summary>
    private static double ReadBandwidth()
    {
        using var big = torch.ones(1L << 28);
        var best = double.MaxValue;
        for (var i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            big.sum().Dispose();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return (1L << 30) / best;
    }

    /// <summary>Weight bytes one token reads: attention projections (absorbed: all of kv_b), router, its experts and the shared ones or the dense MLP, LM head.</summary>
    private static double ActiveWeightBytes(ModelConfig c, int bytesPerWeight)
    {
        double e = c.HiddenSize, h = c.NumAttentionHeads;
        var q = c.QLoraRank is { } lq ? e * lq + lq * h * c.QkHeadDim : e * h * c.QkHeadDim;
        var attention = q + e * c.LatentCacheDim + c.KvLoraRank * h * (c.QkNopeHeadDim + c.VHeadDim) + h * c.VHeadDim * e;
        double total = c.VocabSize * e;
        for (var i = 0; i < c.NumHiddenLayers; i++)
            total += attention + (c.IsMoeLayer(i) ? e * c.NRoutedExperts + 3 * e * c.MoeIntermediateSize * (c.NumExpertsPerTok + c.NSharedExperts) : 3 * e * c.IntermediateSize);
        return total * bytesPerWeight;
    }


    private interface IEngine : IDisposable
    {
        string Name { get; }

        /// <summary>Tokens/s of <paramref name="sequences"/> sequences generating <paramref name="tokens"/> tokens each, from submitting their prompts.</summary>
        double Decode(int sequences, int tokens, int seed);

        /// <summary>Prompt tokens/s to the first token; with <paramref name="decodeTokens"/>, also tokens/s of the steps after it.</summary>
        (double Prefill, double Decode) Prefill(int[] prompt, int decodeTokens = 1);
    }

    private sealed class LlamaCpp : IEngine
    {
        private readonly LLamaWeights _weights;
        private readonly LLamaContext _context;
        private readonly int _vocab;

        public LlamaCpp(string path, int threads, int maxLength)
        {
            Name = $"llama.cpp {(path.EndsWith("f16.gguf") ? "F16" : "F32")}";
            var p = new ModelParams(path)
            {
                ContextSize = (uint)maxLength, BatchSize = Chunk, UBatchSize = Chunk, SeqMax = (uint)Levels.Max(), GpuLayerCount = 0,
                Threads = threads, BatchThreads = threads,
            };
            _weights = LLamaWeights.LoadFromFile(p);
            _context = _weights.CreateContext(p);
            _vocab = _weights.Vocab.Count;
        }

        public string Name { get; }

        public double Decode(int sequences, int tokens, int seed)
        {
            _context.NativeHandle.MemoryClear();
            var batch = new LLamaBatch();
            var last = new int[sequences];
            var sw = Stopwatch.StartNew();
            for (var s = 0; s < sequences; s++)
            {
                var prompt = GatewayLoad.RandomPrompt(PromptTokens, _vocab, seed + s);
                for (var i = 0; i < prompt.Length; i++) last[s] = batch.Add(prompt[i], i, (LLamaSeqId)s, i == prompt.Length - 1);
            }
            var next = new int[sequences];
            for (var t = 0; t < tokens; t++)
            {
                if (_context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp decode failed");
                for (var s = 0; s < sequences; s++) next[s] = ArgMax(_context.NativeHandle.GetLogitsIth(last[s]));
                if (t == tokens - 1) break;
                batch.Clear();
                for (var s = 0; s < sequences; s++) last[s] = batch.Add(next[s], PromptTokens + t, (LLamaSeqId)s, true);
            }
            return sequences * tokens / sw.Elapsed.TotalSeconds;
        }

        public (double Prefill, double Decode) Prefill(int[] prompt, int decodeTokens = 1)
        {
            _context.NativeHandle.MemoryClear();
            var batch = new LLamaBatch();
            var sw = Stopwatch.StartNew();
            for (var start = 0; start < prompt.Length; start += Chunk)
            {
                batch.Clear();
                var end = Math.Min(prompt.Length, start + Chunk);
                for (var i = start; i < end; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
                if (_context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp prefill failed");
            }
            var next = ArgMax(_context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            var prefill = prompt.Length / sw.Elapsed.TotalSeconds;
            sw.Restart();
            for (var t = 1; t < decodeTokens; t++)
            {
                batch.Clear();
                batch.Add(next, prompt.Length + t - 1, LLamaSeqId.Zero, true);
                if (_context.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama.cpp decode failed");
                next = ArgMax(_context.NativeHandle.GetLogitsIth(0));
            }
            return (prefill, decodeTokens > 1 ? (decodeTokens - 1) / sw.Elapsed.TotalSeconds : double.NaN);
        }

        private static int ArgMax(Span<float> logits)
        {
            var best = 0;
            for (var i = 1; i < logits.Length; i++)
                if (logits[i] > logits[best]) best = i;
            return best;
        }

        public void Dispose()
        {
            _context.Dispose();
            _weights.Dispose();
        }
    }
}
