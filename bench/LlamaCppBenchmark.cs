using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Export;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;
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
public sealed class LlamaCppBenchmark(string cacheDir, int decodeTokens, int[] prefillLengths, int rounds, string cpuExperts, string cpuDense)
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
        var options = ComputeOptions.Parse("cpu", cpuExperts, cpuDense);
        engines.Add(Measured("MoeMesh in-process", () => new InProcess(dir, options)));
        await using var http = await GatewayLoad.StartProcessAsync(dir, config.VocabSize, ["--max-batch-tokens", Chunk.ToString(), "--cpu-experts", cpuExperts, "--cpu-dense", cpuDense]);

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
        Console.WriteLine("MoeMesh is the gateway over HTTP; in-process, the same engine called in this process");
        foreach (var c in Levels) Print($"decode, {c,2} sequences:", name => decode[(name, c)], "F1");
        foreach (var n in prefillLengths) Print($"prefill {n,5} tokens:", name => prefill[(name, n)], "F0");
        if (decodeLong.Count > 0) Print($"decode, 1 sequence after a {longest}-token prompt:", name => decodeLong[name], "F1");
        Console.WriteLine($"peak resident memory: MoeMesh gateway process {Stats.StatusBytes("VmHWM:", http.Pid) / 1e9:F2} GB (KV budget 1 GiB); " +
            $"this process (both llama.cpp models, F16 and F32, the in-process engine and the runs) {Stats.StatusBytes("VmHWM:") / 1e9:F2} GB");
        // The VM's bandwidth drifts: measured again at the end, the higher figure is the limit.
        bandwidth = Math.Max(bandwidth, ReadBandwidth());
        Console.WriteLine($"memory read bandwidth, the higher of the readings at the start and at the end: {bandwidth / 1e9:F1} GB/s");
        var active = ActiveWeightBytes(config, options);
        var step = Stats.Median(decode[("MoeMesh", 1)]);
        Console.WriteLine($"one-sequence decode: MoeMesh (experts {(options.PackedExperts ? "packed" : "float32")}, dense {(options.PackedDense ? "packed" : "float32")}) " +
            $"reads {active / 1e6:F0} MB of weights per step, {active * step / 1e9:F1} GB/s = {active * step / bandwidth:P0} of the measured bandwidth");
        foreach (var e in engines) e.Dispose();
    }

    /// <summary>One line of medians: MoeMesh over HTTP and in-process, llama.cpp F16 and F32, and the ratios against F16 and F32.</summary>
    private static void Print(string what, Func<string, List<double>> runs, string format)
    {
        double M(string name) => Stats.Median(runs(name));
        Console.WriteLine($"{what} MoeMesh {M("MoeMesh").ToString(format)}, in-process {M("MoeMesh in-process").ToString(format)}, " +
            $"llama.cpp F16 {M("llama.cpp F16").ToString(format)}, F32 {M("llama.cpp F32").ToString(format)}; " +
            $"ratio vs F16 {M("MoeMesh") / M("llama.cpp F16"):F2}x (in-process {M("MoeMesh in-process") / M("llama.cpp F16"):F2}x), " +
            $"vs F32 {M("MoeMesh") / M("llama.cpp F32"):F2}x (in-process {M("MoeMesh in-process") / M("llama.cpp F32"):F2}x)");
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

    /// <summary>
    /// Bytes of weights a one-sequence decode step reads: packed weights two bytes (a BF16 checkpoint), float32 copies
    /// four; the routers are float32 copies either way.
    /// </summary>
    private static double ActiveWeightBytes(ModelConfig c, ComputeOptions o)
    {
        double e = c.HiddenSize, h = c.NumAttentionHeads, dense = o.PackedDense ? 2 : 4, experts = o.PackedExperts ? 2 : 4;
        var q = c.QLoraRank is { } lq ? e * lq + lq * h * c.QkHeadDim : e * h * c.QkHeadDim;
        var attention = (q + e * c.LatentCacheDim + c.KvLoraRank * h * (c.QkNopeHeadDim + c.VHeadDim) + h * c.VHeadDim * e) * dense;
        var total = c.VocabSize * e * dense;
        for (var i = 0; i < c.NumHiddenLayers; i++)
            total += attention + (c.IsMoeLayer(i)
                ? e * c.NRoutedExperts * 4 + 3 * e * c.MoeIntermediateSize * (c.NumExpertsPerTok * experts + c.NSharedExperts * dense)
                : 3 * e * c.IntermediateSize * dense);
        return total;
    }

    private interface IEngine : IDisposable
    {
        string Name { get; }

        /// <summary>Tokens/s of <paramref name="sequences"/> sequences generating <paramref name="tokens"/> tokens each, from submitting their prompts.</summary>
        double Decode(int sequences, int tokens, int seed);

        /// <summary>Prompt tokens/s to the first token; with <paramref name="decodeTokens"/>, also tokens/s of the steps after it.</summary>
        (double Prefill, double Decode) Prefill(int[] prompt, int decodeTokens = 1);
    }

    /// <summary>
    /// MoeMesh's engine in this process, stepped on a compute thread of its own (as the gateway does: one thread
    /// calls libtorch), batching at most <see cref="Chunk"/> tokens a step as the gateway here does.
    /// </summary>
    private sealed class InProcess : IEngine
    {
        private readonly ComputeThread _thread = new("moemesh-bench-engine");
        private readonly LlmEngine _engine;
        private readonly int _vocab;

        public InProcess(string dir, ComputeOptions options)
        {
            _engine = _thread.Invoke(() => new LlmEngine(DeepSeekModel.Load(dir, options),
                new EngineOptions { KvCacheBytes = 1L << 30, MaxBatchTokens = Chunk, MaxRunningSequences = Levels.Max() }, null, null));
            _vocab = _engine.Model.Config.VocabSize;
        }

        public string Name => "MoeMesh in-process";

        public double Decode(int sequences, int tokens, int seed) => _thread.Invoke(() =>
        {
            var sw = Stopwatch.StartNew();
            var seqs = Enumerable.Range(0, sequences)
                .Select(s => _engine.Add(GatewayLoad.RandomPrompt(PromptTokens, _vocab, seed + s), Greedy(tokens)))
                .ToList();
            while (seqs.Any(s => !s.IsFinished)) _engine.Step();
            return sequences * tokens / sw.Elapsed.TotalSeconds;
        });

        public (double Prefill, double Decode) Prefill(int[] prompt, int decodeTokens = 1) => _thread.Invoke(() =>
        {
            var sw = Stopwatch.StartNew();
            var seq = _engine.Add(prompt, Greedy(decodeTokens));
            while (seq.OutputLength == 0) _engine.Step();
            var prefill = prompt.Length / sw.Elapsed.TotalSeconds;
            sw.Restart();
            while (!seq.IsFinished) _engine.Step();
            return (prefill, decodeTokens > 1 ? (decodeTokens - 1) / sw.Elapsed.TotalSeconds : double.NaN);
        });

        private static SamplingParams Greedy(int tokens) => new() { MaxTokens = tokens, Temperature = 0, IgnoreEos = true };

        public void Dispose() => _thread.Dispose();
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
