using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Text;

namespace MoeMesh.Gateway.Hosting;

/// <summary>The loaded model: engine, tokenizer and chat template.</summary>
public sealed class ModelHost
{
    public required string Name { get; init; }
    public required string Directory { get; init; }
    public required LlmEngine Engine { get; init; }
    public required HfTokenizer Tokenizer { get; init; }
    public required TokenizerConfig TokenizerConfig { get; init; }

    /// <summary>The chat template, or the reason it cannot be applied.</summary>
    public required Func<ChatTemplate> ChatTemplate { get; init; }

    public static ModelHost Load(GatewayOptions options, ILogger logger)
    {
        if (!string.IsNullOrEmpty(options.ExpertNodes))
            throw new ArgumentException("--expert-nodes: remote expert nodes are not available in this build; omit it to run all experts in-process");
        if (options.KvStore != "memory")
            throw new ArgumentException($"--kv-store '{options.KvStore}': only 'memory' is available in this build");
        var compute = ComputeOptions.Parse(options.Device);
        var dir = options.Model;
        if (string.IsNullOrEmpty(dir))
        {
            logger.LogInformation("No --model given; using the demo model in {CacheDir}", options.CacheDir);
            dir = DemoModel.EnsureCached(options.CacheDir, DemoShape.Tiny, seed: 1);
        }
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var tokenizer = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var tokConfig = TokenizerConfig.Load(Path.Combine(dir, "tokenizer_config.json"));
        var eos = config.EosTokenId ?? (tokConfig.EosToken is { } e ? tokenizer.TokenId(e) : null);
        var model = DeepSeekModel.Load(dir, compute);
        logger.LogInformation("Loaded {Model}: {Layers} layers, {Experts} routed experts on {Device}", dir, config.NumHiddenLayers, config.NRoutedExperts, options.Device);
        var engine = new LlmEngine(model, new EngineOptions
        {
            KvCacheBytes = options.KvCacheBytes,
            MaxBatchTokens = options.MaxBatchTokens,
            MaxRunningSequences = options.MaxRunning,
            MaxModelLength = options.MaxModelLen,
        }, tokenizer, eos);
        logger.LogInformation("KV cache: {Pages} pages of {PageSize} tokens, {BytesPerToken} bytes per token; max model length {MaxLen}",
            engine.Cache.PageCount, engine.Cache.PageSize, engine.Cache.BytesPerToken, engine.MaxModelLength);
        var name = string.IsNullOrEmpty(options.ServedModelName)
            ? (string.IsNullOrEmpty(options.Model) ? "moemesh-demo" : Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)))
            : options.ServedModelName;
        return new ModelHost
        {
            Name = name,
            Directory = dir,
            Engine = engine,
            Tokenizer = tokenizer,
            TokenizerConfig = tokConfig,
            ChatTemplate = () => MoeMesh.Engine.Text.ChatTemplate.FromJinja(tokConfig.ChatTemplate, tokConfig.BosToken ?? "", tokConfig.EosToken ?? ""),
        };
    }
}
