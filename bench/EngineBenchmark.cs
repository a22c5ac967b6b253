using System.Diagnostics;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Engine.Text;
using TorchSharp;

namespace MoeMesh.Bench;

/// <summary>
/// The engine issue's benchmark, all figures from one run: matmul rate, prefill of a 1024-token prompt,
/// decode throughput at 1, 8 and 32 sequences through the engine and through the HTTP API.
/// </summary>
public sealed class EngineBenchmark(string cacheDir, int decodeTokens)
{
    private const long KvBytes = 1L << 30;
    private const int PromptTokens = 16;

    public async Task RunAsync()
    {
        Console.WriteLine($"threads: {torch.get_num_threads()}, cores: {Environment.ProcessorCount}");
        var matmul = MatmulGflops();
        Console.WriteLine($"matmul fp32 1024x1024x1024: {matmul:F1} GFLOP/s");

        var sw = Stopwatch.StartNew();
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        Console.WriteLine($"model: {dir} (ready in {sw.Elapsed.TotalSeconds:F1} s)");
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var engine = LoadEngine(dir);
        Console.WriteLine($"KV cache: {engine.Cache.BytesPerToken} bytes per token ({config.NumHiddenLayers} layers x {config.LatentCacheDim} values x 4 bytes)");

        var (prefillTps, prefillGflops) = Prefill(engine, config);
        Console.WriteLine($"prefill 1024 tokens: {prefillTps:F0} tokens/s, {prefillGflops:F1} GFLOP/s = {prefillGflops / matmul:P0} of matmul rate");
        var (cold, warm) = RepeatedPrompt(engine, config);
        Console.WriteLine($"time to first token, 1024-token prompt: {cold * 1e3:F0} ms cold, {warm * 1e3:F0} ms when sent again (prefix cache) = {cold / warm:F1}x");

        // Rounds interleave everything: each round runs every concurrency through both paths, engine and HTTP
        // in ABBA order, so that a drift of the shared VM weighs on every figure alike. Each figure is the
        // median of its rounds (single rounds on this VM swing by 20% and more); all rounds are printed.
        await using var gateway = await GatewayLoad.StartAsync(dir, config.VocabSize);
        int[] levels = [1, 8, 32];
        var e = levels.ToDictionary(c => c, _ => new List<double>());
        var h = levels.ToDictionary(c => c, _ => new List<double>());
        for (var round = 0; round < Rounds; round++)
        {
            foreach (var c in levels)
            {
                if (round % 2 == 0) e[c].Add(EngineDecode(engine, c));
                h[c].Add(await gateway.DecodeAsync(c, decodeTokens));
                if (round % 2 == 1) e[c].Add(EngineDecode(engine, c));
            }
        }
        var direct = levels.ToDictionary(c => c, c => Stats.Median(e[c]));
        var http = levels.ToDictionary(c => c, c => Stats.Median(h[c]));
        foreach (var c in levels)
        {
            Console.WriteLine($"decode, {c,2} sequences: engine {direct[c]:F1} tokens/s [{string.Join(", ", e[c].Select(x => x.ToString("F1")))}], " +
                $"HTTP {http[c]:F1} tokens/s [{string.Join(", ", h[c].Select(x => x.ToString("F1")))}] = {http[c] / direct[c]:P1} of engine");
        }
        Console.WriteLine($"ratio decode 32 / 1 (engine): {direct[32] / direct[1]:F2}x");
        Console.WriteLine($"ratio HTTP / engine at 32: {http[32] / direct[32]:F3}");
    }

    /// <summary>
    /// The routed experts' CPU kernel (weights kept as BF16, one parallel pass per layer) against libtorch on float32
    /// copies, in one run: two engines of the same model, decode at 1, 8 and 32 sequences and a 1024-token
    /// prefill in alternating rounds (ABBA), medians and ratios, and the expert weight bytes each holds.
    /// </summary>
    public void CompareExpertKernels()
    {
        Console.WriteLine($"threads: {torch.get_num_threads()}, cores: {Environment.ProcessorCount}");
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        Console.WriteLine($"model: hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, {config.NRoutedExperts} experts of width {config.MoeIntermediateSize}, top {config.NumExpertsPerTok}, BF16 on disk");
        var kernel = LoadEngine(dir, ComputeOptions.Cpu with { PackedExperts = true });
        var libtorch = LoadEngine(dir, ComputeOptions.Cpu);
        int[] levels = [1, 8, 32];
        var k = levels.ToDictionary(c => c, _ => new List<double>());
        var l = levels.ToDictionary(c => c, _ => new List<double>());
        var pk = new List<double>();
        var pl = new List<double>();
        for (var round = 0; round < Rounds; round++)
        {
            var (first, second) = round % 2 == 0 ? ((kernel, k, pk), (libtorch, l, pl)) : ((libtorch, l, pl), (kernel, k, pk));
            foreach (var (engine, decode, prefill) in new[] { first, second })
            {
                foreach (var c in levels) decode[c].Add(EngineDecode(engine, c));
                prefill.Add(Prefill(engine, config).TokensPerSecond);
            }
        }
        foreach (var c in levels)
            Console.WriteLine($"decode, {c,2} sequences: kernel {Stats.Median(k[c]):F1} tokens/s [{string.Join(", ", k[c].Select(x => x.ToString("F1")))}], " +
                $"libtorch {Stats.Median(l[c]):F1} tokens/s [{string.Join(", ", l[c].Select(x => x.ToString("F1")))}] = {Stats.Median(k[c]) / Stats.Median(l[c]):F2}x");
        Console.WriteLine($"prefill 1024 tokens: kernel {Stats.Median(pk):F0} tokens/s, libtorch {Stats.Median(pl):F0} tokens/s = {Stats.Median(pk) / Stats.Median(pl):F2}x");
    }


    private const int Rounds = 6;

    private static int _prefills;

    private static double MatmulGflops()
    {
        using var a = torch.randn(1024, 1024);
        using var b = torch.randn(1024, 1024);
        for (var i = 0; i < 3; i++) torch.mm(a, b).Dispose();
        const int reps = 20;
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < reps; i++) torch.mm(a, b).Dispose();
        return 2.0 * 1024 * 1024 * 1024 * reps / sw.Elapsed.TotalSeconds / 1e9;
    }

    private static LlmEngine LoadEngine(string dir, ComputeOptions? options = null)
    {
        var sw = Stopwatch.StartNew();
        // Without options, the CPU defaults: the default benchmark compares this engine with a gateway that uses them.
        var model = DeepSeekModel.Load(dir, options ?? ComputeOptions.CpuDefault);
        Console.WriteLine($"loaded in {sw.Elapsed.TotalSeconds:F1} s");
        // With the tokenizer, the direct path detokenises as the gateway's engine loop does.
        var tokenizer = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        return new LlmEngine(model, new EngineOptions { KvCacheBytes = KvBytes, MaxBatchTokens = 1024, MaxRunningSequences = 64 }, tokenizer, null);
    }

    private static int[] RandomPrompt(int length, int vocab, int seed) => GatewayLoad.RandomPrompt(length, vocab, seed);

    /// <summary>Tokens/s of one 1024-token prefill step, and the GFLOP/s that implies (matmul FLOPs of the model's projections and attention).</summary>
    private static (double TokensPerSecond, double Gflops) Prefill(LlmEngine engine, ModelConfig c)
    {
        const int n = 1024;
        double best = double.MaxValue;
        for (var rep = 0; rep < 3; rep++)
        {
            // A prompt never sent before: a repeated one would be served from the prefix cache.
            var seq = engine.Add(RandomPrompt(n, c.VocabSize, 10_000 + _prefills++), new SamplingParams { MaxTokens = 1, Temperature = 0 });
            var sw = Stopwatch.StartNew();
            while (!seq.IsFinished) engine.Step();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return (n / best, FlopsPerToken(c, n) * n / best / 1e9);
    }

    /// <summary>Seconds to the first token of a fresh 1024-token prompt, then of the same prompt again (best of 3 each).</summary>
    private static (double Cold, double Warm) RepeatedPrompt(LlmEngine engine, ModelConfig c)
    {
        double cold = double.MaxValue, warm = double.MaxValue;
        for (var rep = 0; rep < 3; rep++)
        {
            var prompt = RandomPrompt(1024, c.VocabSize, 500 + rep);
            cold = Math.Min(cold, FirstToken(prompt));
            warm = Math.Min(warm, FirstToken(prompt));
        }
        return (cold, warm);

        double FirstToken(int[] prompt)
        {
            var seq = engine.Add(prompt, new SamplingParams { MaxTokens = 1, Temperature = 0 });
            var sw = Stopwatch.StartNew();
            while (!seq.IsFinished) engine.Step();
            return sw.Elapsed.TotalSeconds;
        }
    }

    /// <summary>Matmul FLOPs per prompt token of a prefill of length n (naive MLA, top-k plus shared experts, LM head for one row).</summary>
    private static double FlopsPerToken(ModelConfig c, int n)
    {
        double d = c.HiddenSize, h = c.NumAttentionHeads, q = c.QLoraRank ?? 0, r = c.KvLoraRank;
        var attnProj = (q > 0 ? d * q + q * h * c.QkHeadDim : d * h * c.QkHeadDim) + d * c.LatentCacheDim
                       + r * h * (c.QkNopeHeadDim + c.VHeadDim) + h * c.VHeadDim * d;
        var attnScores = h * (c.QkHeadDim + c.VHeadDim) * (n + 1) / 2.0; // causal: average context n/2
        var dense = 3 * d * c.IntermediateSize;
        var moe = 3 * d * c.MoeIntermediateSize * (c.NumExpertsPerTok + c.NSharedExperts) + d * c.NRoutedExperts;
        var moeLayers = Enumerable.Range(0, c.NumHiddenLayers).Count(c.IsMoeLayer);
        return 2 * (c.NumHiddenLayers * (attnProj + attnScores) + (c.NumHiddenLayers - moeLayers) * dense + moeLayers * moe);
    }

    /// <summary>
    /// Where a decode step's time goes at 1, 8 and 32 sequences: the engine decodes (after a warm-up run) with a
    /// <see cref="StepProfile"/>, the prompts' step left out; prints milliseconds per step for each part of the
    /// forward pass and for the rest of the step (embedding, residual adds, batch building, the logits' copy,
    /// sampling, detokenisation), medians of 3 runs, with each one's share of the step.
    /// </summary>
    public void Profile(ComputeOptions options, int prefillTokens = 512)
    {
        Console.WriteLine($"threads: {torch.get_num_threads()}, cores: {Environment.ProcessorCount}");
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var profile = new StepProfile();
        var engine = LoadEngine(dir, options with { Profile = profile });
        Console.WriteLine($"routed experts {(options.PackedExperts ? "packed" : "libtorch")}, dense weights {(options.PackedDense ? "packed" : "libtorch")}");
        ProfilePrefill(engine, profile, config.VocabSize, prefillTokens);
        foreach (var c in new[] { 1, 8, 32 })
        {
            EngineDecode(engine, c);
            var parts = Enum.GetValues<StepPart>().ToDictionary(p => p, _ => new List<double>());
            var rest = new List<double>();
            var steps = new List<double>();
            for (var round = 0; round < 3; round++)
            {
                var seqs = Enumerable.Range(0, c)
                    .Select(i => engine.Add(RandomPrompt(PromptTokens, config.VocabSize, 500 + 64 * round + i),
                        new SamplingParams { MaxTokens = decodeTokens, Temperature = 0, IgnoreEos = true }))
                    .ToList();
                engine.Step();
                profile.Take();
                var sw = Stopwatch.StartNew();
                var n = 0;
                for (; seqs.Any(s => !s.IsFinished); n++) engine.Step();
                var step = sw.Elapsed.TotalMilliseconds / n;
                var timed = profile.Take();
                foreach (var (p, t) in timed) parts[p].Add(t.TotalMilliseconds / n);
                rest.Add(step - timed.Values.Sum(t => t.TotalMilliseconds) / n);
                steps.Add(step);
            }
            var total = Stats.Median(steps);
            Console.WriteLine($"decode, {c,2} sequences: {total:F1} ms a step ({c * 1000 / total:F1} tokens/s), medians of 3 runs of {decodeTokens} tokens:");
            foreach (var (name, list) in parts.Select(kv => (kv.Key.ToString(), kv.Value)).Append(("rest of step", rest)))
            {
                var ms = Stats.Median(list);
                Console.WriteLine($"  {name,-14} {ms,7:F2} ms  {ms / total,5:P0}");
            }
        }
    }

    /// <summary>Where an <paramref name="n"/>-token prefill's time goes (in chunks of the engine's batch tokens): medians of 3 fresh prompts, the parts as in <see cref="Profile"/>.</summary>
    private void ProfilePrefill(LlmEngine engine, StepProfile profile, int vocab, int n)
    {
        var parts = Enum.GetValues<StepPart>().ToDictionary(p => p, _ => new List<double>());
        var steps = new List<double>();
        for (var round = 0; round < 4; round++)
        {
            var seq = engine.Add(RandomPrompt(n, vocab, 20_000 + round), new SamplingParams { MaxTokens = 1, Temperature = 0 });
            profile.Take();
            var sw = Stopwatch.StartNew();
            while (!seq.IsFinished) engine.Step();
            var timed = profile.Take();
            if (round == 0) continue; // warm-up
            steps.Add(sw.Elapsed.TotalMilliseconds);
            foreach (var (p, t) in timed) parts[p].Add(t.TotalMilliseconds);
        }
        var total = Stats.Median(steps);
        Console.WriteLine($"prefill, {n} tokens: {total:F0} ms ({n * 1000 / total:F0} tokens/s), medians of 3 prompts:");
        foreach (var (p, list) in parts)
            Console.WriteLine($"  {p,-14} {Stats.Median(list),7:F1} ms  {Stats.Median(list) / total,5:P0}");
    }

    /// <summary>
    /// Decode throughput with response_format json_object's constraint against none, at 1 and 32 sequences, on the
    /// benchmark model: alternating rounds, medians, the ratio from the same run; timed while all the sequences run.
    /// </summary>
    public void CompareConstrained(ComputeOptions options)
    {
        var dir = DemoModel.EnsureCached(cacheDir, DemoShape.Benchmark, seed: 1);
        var engine = LoadEngine(dir, options);
        var schema = new MoeMesh.Engine.Sampling.Grammar.SchemaGrammar(
            MoeMesh.Engine.Sampling.Grammar.JsonSchemaCompiler.Compile(System.Text.Json.JsonDocument.Parse(GrammarBenchmark.Schema).RootElement));
        MoeMesh.Engine.Sampling.Grammar.OutputGrammar?[] variants = [null, MoeMesh.Engine.Sampling.Grammar.JsonObjectGrammar.Instance, schema];
        foreach (var c in new[] { 1, 32 })
        {
            var rates = variants.Select(_ => new List<double>()).ToArray();
            for (var round = 0; round < 7; round++)
            {
                // The first round warms up (the token masks are built then); the order rotates round to round.
                for (var k = 0; k < variants.Length; k++)
                {
                    var v = (k + round) % variants.Length;
                    var rate = Decode(engine, c, variants[v]);
                    if (round > 0) rates[v].Add(rate);
                }
            }
            var (f, j, s) = (Stats.Median(rates[0]), Stats.Median(rates[1]), Stats.Median(rates[2]));
            Console.WriteLine($"decode, {c,2} sequences: {f:F1} tokens/s unconstrained, {j:F1} with a JSON object constraint (ratio {j / f:F3}), {s:F1} with a JSON schema (ratio {s / f:F3})");
        }
    }

    private double Decode(LlmEngine engine, int concurrency, MoeMesh.Engine.Sampling.Grammar.OutputGrammar? grammar)
    {
        var seqs = Enumerable.Range(0, concurrency)
            .Select(i => engine.Add(RandomPrompt(PromptTokens, engine.Model.Config.VocabSize, 300 + i),
                new SamplingParams { MaxTokens = decodeTokens, Temperature = 0, IgnoreEos = true, Grammar = grammar }))
            .ToList();
        engine.Step(); // the prefill, not timed
        // Timed while every sequence runs: a constrained one that closes its object early would otherwise leave a
        // smaller batch, whose steps cost more a token for reasons that have nothing to do with the masks.
        var sw = Stopwatch.StartNew();
        var before = seqs.Sum(s => s.OutputLength);
        while (seqs.All(s => !s.IsFinished)) engine.Step();
        var rate = (seqs.Sum(s => s.OutputLength) - before) / sw.Elapsed.TotalSeconds;
        while (seqs.Any(s => !s.IsFinished)) engine.Step();
        return rate;
    }

    /// <summary>Generated tokens per second for <paramref name="concurrency"/> sequences, from submission to the last token.</summary>
    private double EngineDecode(LlmEngine engine, int concurrency)
    {
        var seqs = Enumerable.Range(0, concurrency)
            .Select(i => engine.Add(RandomPrompt(PromptTokens, engine.Model.Config.VocabSize, 100 + i),
                new SamplingParams { MaxTokens = decodeTokens, Temperature = 0, IgnoreEos = true }))
            .ToList();
        var sw = Stopwatch.StartNew();
        while (seqs.Any(s => !s.IsFinished)) engine.Step();
        return concurrency * decodeTokens / sw.Elapsed.TotalSeconds;
    }
}
