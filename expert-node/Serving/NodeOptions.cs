using MoeMesh.Cli;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>The expert node's settings; each is a command-line option and a MOEMESH_ variable (see <see cref="CommandLine"/>).</summary>
public sealed record NodeOptions(
    string Model, ModelConfig Config, ExpertPlacement Placement, string? PlacementFile, ComputeOptions Compute, int? Threads, TimeSpan Drain,
    BearerKey? ApiKey, string Urls, int MaxDispatchTokens)
{
    public const string DefaultUrl = "http://127.0.0.1:9000";

    /// <summary>
    /// The largest dispatch body accepted, from the model: a message of <see cref="MaxDispatchTokens"/> tokens with
    /// every routed expert of each token and float32 hidden states. Larger ones get 413 before their body is read.
    /// </summary>
    public long MaxDispatchBytes => DispatchCodec.MaxMessageBytes(MaxDispatchTokens, Config.NumExpertsPerTok, Config.HiddenSize);

    /// <summary>Reads and checks the options; null when --help was asked for. Throws <see cref="CommandLineException"/>.</summary>
    public static NodeOptions? Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        var (cli, read) = Declare();
        var parsed = cli.Parse(args, environment);
        if (parsed.HelpRequested) return null;
        try
        {
            return read(parsed);
        }
        catch (Exception e) when (e is ArgumentException or ModelConfigException or IOException)
        {
            throw cli.Error(e.Message);
        }
    }

    /// <summary>The --help text.</summary>
    public static string Usage() => Declare().Cli.Usage();

    private static (CommandLine Cli, Func<ParsedCommandLine, NodeOptions> Read) Declare()
    {
        var cli = new CommandLine("moemesh-expert-node", "Holds a subset of a DeepSeek model's routed experts and computes them for gateways. "
            + "Endpoints: POST /v1/dispatch (binary), GET /v1/experts, POST /v1/placement (needs --api-key), /healthz, /readyz, /metrics.");
        var model = cli.Add<string?>("--model", "DIR", "Hugging Face checkpoint folder (config.json, *.safetensors); without it the built-in demo model, the gateway's, generated into --cache-dir", Values.OptionalText, null);
        var cacheDir = cli.Add("--cache-dir", "DIR", "Folder for the generated demo model (default ~/.cache/moemesh)", Values.Text, DemoModel.DefaultCacheRoot());
        var experts = cli.Add("--experts", "SPEC", "all, 0-15 or 0,3,9-12: the same set on every MoE layer (default all)", Values.Text, "all");
        var placement = cli.Add<string?>("--placement", "FILE", "Per-layer assignment {\"layers\": {\"1\": \"0-15\", ...}} as the operator writes it; re-read when it changes (overrides --experts)", Values.OptionalText, null);
        var urls = cli.Add("--urls", "URL", $"Listen address (default {DefaultUrl}); the node is meant for the cluster network", Values.Text, DefaultUrl);
        var device = cli.Add("--device", "cpu|cuda[:N]", "Compute device (default cpu)", Values.Device, "cpu");
        var cpuExperts = cli.Add("--cpu-experts", "auto|libtorch|packed", "Experts on the CPU: packed, the engine's kernel over the checkpoint's BF16 or FP8 weights as stored (a half or a quarter of the memory of float32 copies), or libtorch on float32 copies; auto (default) is packed where the CPU has AVX2 and FMA", Values.OneOf("auto", "libtorch", "packed"), "auto");
        var drain = cli.Add("--drain-seconds", "N", "After a placement change, dropped experts stay servable this long for gateways that have not seen it (default 3; gateways poll every second)", Values.NonNegativeSeconds, 3.0);
        var threads = cli.Add<int?>("--threads", "N", "CPU threads of libtorch and of the expert kernels (default: one per core); set it when nodes share a host", v => Values.PositiveInt(v), null);
        var apiKey = cli.Add<string?>("--api-key", "KEY", "Require 'Authorization: Bearer KEY' on /v1 (gateways: --expert-api-key KEY); POST /v1/placement is off without it", Values.OptionalText, null);
        var maxTokens = cli.Add("--max-dispatch-tokens", "N", "Most tokens in one dispatch; bounds the request body (default 8192, at least the gateways' --max-batch-tokens)", Values.PositiveInt, 8192);
        return (cli, p =>
        {
            var dir = p.Get(model) ?? DemoModel.BuiltIn(p.Get(cacheDir));
            var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
            var file = p.Get(placement);
            if (file is not null && !File.Exists(file)) throw new ArgumentException($"--placement: {file} does not exist");
            return new NodeOptions(dir, config, ExpertPlacement.Uniform(config, p.Get(experts)), file, ComputeOptions.Parse(p.Get(device), p.Get(cpuExperts), "libtorch"), p.Get(threads),
                TimeSpan.FromSeconds(p.Get(drain)), BearerKey.From(p.Get(apiKey)), p.Get(urls), p.Get(maxTokens));
        });
    }
}
