using MoeMesh.Engine.Model;
using MoeMesh.Bench;

// Usage: dotnet run -c Release --project bench [-- --model-cache DIR] [--tokens N] [--sharding [--node-threads N] [--gateway-threads N] [--node-cpus LIST]] [--sampling] [--kernel-rates [--expert-pass|--prefill]] [--parallel-calls] [--tokenizer [--rounds N]] [--grammar [--walks N]] [--constrained-decode] [--llama-cpp] [--long-context] [--profile [--prefill-tokens N]] [--cpu-experts auto|libtorch|packed] [--cpu-dense auto|libtorch|packed] [--expert-kernel] [--kv-store] [--placement] [--simulate-day]
//   default: the engine issue's benchmark; --sharding: the expert-sharding issue's benchmark
//   (--node-threads: libtorch threads of each expert-node process; --gateway-threads: of the gateway
//   when its experts are on nodes, the in-process baseline keeps one per core; --node-cpus: run the
//   nodes under taskset -c LIST, e.g. with the benchmark itself under taskset -c 0 and nodes on 1);
//   --sampling: time per token of the sampler's paths at a 32k and a 129k vocabulary;
//   --kv-store: the shared KV store (a local redis-server): time to first token cold, local hit and Redis hit,
//   page size, Redis throughput, and decode at 32 sequences with --kv-store redis against memory;
//   --kernel-rates: the packed BF16 kernel against libtorch float32 at the benchmark model's projection shapes,
//   and the FP8 kernel; with --expert-pass, the kernel's multiply-add rate in cache and the routed-expert pass alone;
//   --parallel-calls: what a parallel kernel call costs beyond its work, Parallel.For against the engine's KernelThreads;
//   --tokenizer [--rounds N]: the engine's tokenizer against Hugging Face's tokenizers (node, tests/oracle) on DeepSeek-V3's tokenizer.json, a long prompt, and its chat template on a long conversation against @huggingface/jinja (run in the repository root);
//   --profile: where a 512-token (--prefill-tokens N) prefill and a decode step at 1, 8 and 32 sequences spend their time (attention,
//   router, experts, LM head, rest);
//   --llama-cpp [--lengths 512,2048] [--rounds 4]: MoeMesh (the gateway over HTTP and the engine in-process) against
//   llama.cpp (LLamaSharp's CPU build) on the benchmark model exported to GGUF F16 and F32: decode at 1, 8, 32
//   sequences, prefill, decode after the longest prompt, memory, bandwidth;
//   --profile and --llama-cpp run MoeMesh with --cpu-experts and --cpu-dense as given (default auto, as the gateway);
//   --long-context [--lengths 512,2048,16000] [--rounds 2]: prompts of each length prefilled with attention in tiles
//   and in one piece (alternating), decode at one sequence after each, peak memory the prefill added;
//   --grammar [--walks N]: constrained decoding's work per token (JSON object masks) on DeepSeek-V3's vocabulary and a 32k one (run in the repository root);
//   --constrained-decode: decode throughput at 1 and 32 sequences with a JSON object constraint, a JSON schema and none, on the benchmark model;
//   --placement: the expert placement planner at DeepSeek-V3's shape: balance, moves after a drift, time;
//   --simulate-day: a day of a DeepSeek-V3-shaped expert tier with the operator's autoscaler and planner.
var cache = ArgValue(args, "--model-cache") ?? Path.Combine(Path.GetTempPath(), "moemesh-bench");
var tokens = int.Parse(ArgValue(args, "--tokens") ?? "48");
// How the gateway or engine under test holds its CPU weights, as the gateway's --cpu-experts and --cpu-dense take it.
var (cpuExperts, cpuDense) = (ArgValue(args, "--cpu-experts") ?? "auto", ArgValue(args, "--cpu-dense") ?? "auto");
if (args.Contains("--kernel-rates")) { if (args.Contains("--expert-pass")) KernelRates.ExpertPass(); else if (args.Contains("--prefill")) KernelRates.Prefill(); else KernelRates.Run(); }
else if (args.Contains("--placement"))
    PlacementBenchmark.Run();
else if (args.Contains("--simulate-day"))
    DaySimulation.Run();
else if (args.Contains("--kv-store"))
    await new KvStoreBenchmark(cache, tokens).RunAsync();
else if (args.Contains("--sampling"))
    SamplingBenchmark.Run();
else if (args.Contains("--llama-cpp"))
    await new LlamaCppBenchmark(cache, tokens, (ArgValue(args, "--lengths") ?? "512,2048").Split(',').Select(int.Parse).ToArray(), IntArg("--rounds") ?? 4, cpuExperts, cpuDense).RunAsync();
else if (args.Contains("--long-context"))
    new LongContextBenchmark(cache, tokens, (ArgValue(args, "--lengths") ?? "512,2048,16000").Split(',').Select(int.Parse).ToArray(), IntArg("--rounds") ?? 2).Run();
else if (args.Contains("--parallel-calls")) ParallelCalls.Run();
else if (args.Contains("--grammar")) GrammarBenchmark.Run(ArgValue(args, "--repository") ?? Directory.GetCurrentDirectory(), IntArg("--walks") ?? 40);
else if (args.Contains("--constrained-decode")) new EngineBenchmark(cache, tokens).CompareConstrained(ComputeOptions.Parse("cpu", cpuExperts, cpuDense));
else if (args.Contains("--tokenizer")) TokenizerBenchmark.Run(ArgValue(args, "--repository") ?? Directory.GetCurrentDirectory(), IntArg("--rounds") ?? 5);
else if (args.Contains("--profile"))
    new EngineBenchmark(cache, tokens).Profile(ComputeOptions.Parse("cpu", cpuExperts, cpuDense), IntArg("--prefill-tokens") ?? 512);
else if (args.Contains("--expert-kernel"))
    new EngineBenchmark(cache, tokens).CompareExpertKernels();
else if (args.Contains("--sharding"))
    await new ShardingBenchmark(cache, tokens, IntArg("--node-threads"), IntArg("--gateway-threads"), ArgValue(args, "--node-cpus")).RunAsync();
else await new EngineBenchmark(cache, tokens).RunAsync();
return;

int? IntArg(string name) => ArgValue(args, name) is { } v ? int.Parse(v) : null;

static string? ArgValue(string[] args, string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
