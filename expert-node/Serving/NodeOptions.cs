using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>The expert node's settings; each is a command-line option, a configuration key and a MOEMESH_ variable.</summary>
public sealed record NodeOptions(string Model, ModelConfig Config, IReadOnlyList<int> Experts, ComputeOptions Compute)
{
    public const string Usage = """
        moemesh-expert-node: holds a subset of a DeepSeek model's routed experts and serves them to gateways
          --model DIR       Hugging Face checkpoint folder (required)
          --experts SPEC    all, 0-15 or 0,3,9-12: the same set on every MoE layer (default all)
          --urls URL        listen address (default http://127.0.0.1:9000)
          --device DEV      cpu, cuda or cuda:N (default cpu)
        Endpoints: POST /v1/dispatch (binary), GET /v1/experts, /healthz, /readyz, /metrics
        """;

    /// <summary>Reads and checks the options; throws <see cref="ArgumentException"/> or <see cref="ModelConfigException"/>.</summary>
    public static NodeOptions FromConfiguration(IConfiguration c)
    {
        var model = c["model"];
        if (string.IsNullOrEmpty(model)) throw new ArgumentException("--model is required");
        var config = ModelConfig.Load(Path.Combine(model, "config.json"));
        var experts = ExpertSet.Parse(c["experts"] ?? "all", config.NRoutedExperts);
        return new NodeOptions(model, config, experts, ComputeOptions.Parse(c["device"]));
    }
}
