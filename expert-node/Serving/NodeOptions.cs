using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>The expert node's settings; each is a command-line option, a configuration key and a MOEMESH_ variable.</summary>
public sealed record NodeOptions(
    string Model, ModelConfig Config, ExpertPlacement Placement, string? PlacementFile, ComputeOptions Compute, int? Threads, TimeSpan Drain, BearerKey? ApiKey)
{
    public const string Usage = """
        moemesh-expert-node: holds a subset of a DeepSeek model's routed experts and serves them to gateways
          --model DIR       Hugging Face checkpoint folder (required)
          --experts SPEC    all, 0-15 or 0,3,9-12: the same set on every MoE layer (default all)
          --placement FILE  per-layer assignment {"layers": {"1": "0-15", ...}}, as the operator writes it;
                            re-read when it changes (overrides --experts)
          --urls URL        listen address (default http://127.0.0.1:9000)
          --device DEV      cpu, cuda or cuda:N (default cpu)
          --drain-seconds N after a placement change, dropped experts stay servable this long for gateways
                            that have not seen the change yet (default 3; gateways poll every second)
          --threads N       libtorch intra-op CPU threads (default: one per core); set it when nodes share a host
          --api-key KEY     require 'Authorization: Bearer KEY' on /v1 endpoints (gateways: --expert-api-key KEY)
        Endpoints: POST /v1/dispatch (binary), GET /v1/experts, POST /v1/placement, /healthz, /readyz, /metrics
        """;

    /// <summary>Reads and checks the options; throws <see cref="ArgumentException"/> or <see cref="ModelConfigException"/>.</summary>
    public static NodeOptions FromConfiguration(IConfiguration configuration)
    {
        // "drain-seconds" is also read as DRAIN_SECONDS: environment variables cannot spell a dash.
        var c = (string key) => configuration[key] ?? configuration[key.Replace('-', '_')];
        var model = c("model");
        if (string.IsNullOrEmpty(model)) throw new ArgumentException("--model is required");
        var config = ModelConfig.Load(Path.Combine(model, "config.json"));
        var placement = ExpertPlacement.Uniform(config, c("experts") ?? "all");
        var file = c("placement");
        if (file is not null && !File.Exists(file)) throw new ArgumentException($"--placement: {file} does not exist");
        int? threads = c("threads") is { } t ? int.TryParse(t, out var n) && n > 0 ? n : throw new ArgumentException($"--threads must be a positive integer, got '{t}'") : null;
        var drain = c("drain-seconds") is { } d ? double.TryParse(d, System.Globalization.CultureInfo.InvariantCulture, out var s) && s >= 0 ? s : throw new ArgumentException($"--drain-seconds must be a non-negative number, got '{d}'") : 3;
        return new NodeOptions(model, config, placement, file, ComputeOptions.Parse(c("device")), threads, TimeSpan.FromSeconds(drain), BearerKey.From(c("api-key")));
    }
}
