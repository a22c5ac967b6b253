using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Text;

namespace MoeMesh.Gateway.Hosting;

/// <summary>The loaded model: engine, tokenizer and chat template.</summary>
public sealed class ModelHost : IDisposable
{
    public required string Name { get; init; }
    public required string Directory { get; init; }
    public required LlmEngine Engine { get; init; }
    public required HfTokenizer Tokenizer { get; init; }
    public required TokenizerConfig TokenizerConfig { get; init; }

    /// <summary>The remote expert backend when the experts are on nodes; null in-process.</summary>
    public RemoteExpertBackend? RemoteExperts { get; init; }

    /// <summary>Tokens routed to each remote expert over the last minute (null with experts in-process): the placement planner's input.</summary>
    public ExpertLoad? ExpertLoad { get; init; }

    /// <summary>Whether special-token text inside chat message content becomes special tokens (--special-tokens-in-content special).</summary>
    public bool SpecialTokensInContent { get; init; }

    /// <summary>Whether chat responses split reasoning from the answer (--reasoning-parser deepseek_r1).</summary>
    public bool ReasoningParser { get; init; }

    /// <summary>The chat template, or the reason it cannot be applied.</summary>
    public required Func<ChatTemplate> ChatTemplate { get; init; }

    /// <summary>Frees the engine's memory when the host is disposed (after the engine loop has stopped).</summary>
    public void Dispose()
    {
        Engine.Dispose();
        ComputeThread.Dispose();
    }

    /// <summary>The checkpoint folder to serve: --model, or the demo model generated into the cache folder.</summary>
    public static string ResolveDirectory(GatewayOptions options, ILogger logger)
    {
        if (!string.IsNullOrEmpty(options.Model)) return options.Model;
        logger.LogInformation("No --model given; using the demo model in {CacheDir}", options.CacheDir);
        return DemoModel.BuiltIn(options.CacheDir);
    }

    /// <summary>The thread the model was loaded on and the engine loop runs on: the process's one libtorch thread.</summary>
    public required ComputeThread ComputeThread { get; init; }

    /// <summary>Bytes of the dense weights held (everything but the routed experts).</summary>
    public long DenseWeightBytes => Engine.Model.DenseByteSize;

    /// <summary>Bytes of routed-expert weights held in-process (0 with expert nodes).</summary>
    public long ExpertWeightBytes => (Engine.Model.Experts as LocalExpertBackend)?.ByteSize ?? 0;

    /// <summary>
    /// Loads the model on a new compute thread (the engine loop runs there too); routed experts go through
    /// <paramref name="router"/> when given, else all are loaded here.
    /// </summary>
    public static ModelHost Load(GatewayOptions options, string dir, ILogger logger, IExpertRouter? router)
    {
        var thread = new ComputeThread("moemesh-engine");
        try
        {
            return thread.Invoke(() => Load(options, dir, logger, router, thread));
        }
        catch
        {
            thread.Dispose();
            throw;
        }
    }

    private static ModelHost Load(GatewayOptions options, string dir, ILogger logger, IExpertRouter? router, ComputeThread thread)
    {
        var compute = ComputeOptions.Parse(options.Device, options.CpuExperts, options.CpuDense);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var tokenizer = HfTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var tokConfig = TokenizerConfig.Load(Path.Combine(dir, "tokenizer_config.json"));
        var eos = config.EosTokenId ?? (tokConfig.EosToken is { } e ? tokenizer.TokenId(e) : null);
        // Ten-second buckets over a minute: recent enough to follow a shift, long enough to smooth a burst.
        var load = router is null ? null : new ExpertLoad(config.NumHiddenLayers, config.NRoutedExperts, TimeSpan.FromSeconds(10), 6);
        var remote = router is null ? null : new RemoteExpertBackend(router, compute, load);
        var model = remote is null ? DeepSeekModel.Load(dir, compute) : DeepSeekModel.Load(dir, compute, remote);
        logger.LogInformation("Loaded {Model}: {Layers} layers, {Experts} routed experts {Where} on {Device}", dir, config.NumHiddenLayers, config.NRoutedExperts,
            router is null ? "in-process" : "on expert nodes", options.Device);
        var engine = new LlmEngine(model, new EngineOptions
        {
            KvCacheBytes = options.KvCacheBytes,
            MaxBatchTokens = options.MaxBatchTokens,
            MaxRunningSequences = options.MaxRunning,
            MaxModelLength = options.MaxModelLen,
            MicroBatches = options.MicroBatches ?? (router is null ? 1 : 2),
            MicroBatchMinTokens = options.MicroBatchMinTokens,
            PrefixCaching = options.PrefixCaching,
            RecordComputedPages = options.KvStoreSettings is not null,
        }, tokenizer, eos);
        logger.LogInformation("KV cache: {Pages} pages of {PageSize} tokens, {BytesPerToken} bytes per token; max model length {MaxLen}",
            engine.Cache.PageCount, engine.Cache.PageSize, engine.Cache.BytesPerToken, engine.MaxModelLength);
        var name = string.IsNullOrEmpty(options.ServedModelName)
            ? (string.IsNullOrEmpty(options.Model) ? "moemesh-demo" : Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)))
            : options.ServedModelName;
        var host = new ModelHost
        {
            ComputeThread = thread,
            Name = name,
            Directory = dir,
            Engine = engine,
            Tokenizer = tokenizer,
            TokenizerConfig = tokConfig,
            RemoteExperts = remote,
            ExpertLoad = load,
            SpecialTokensInContent = options.SpecialTokensInContent,
            ReasoningParser = options.ReasoningParser,
            ChatTemplate = LoadChatTemplate(options.ChatTemplate, tokConfig, logger),
        };
        logger.LogInformation("Weights held: {Dense} bytes dense, {Experts} bytes of routed experts in-process; the checkpoint's files hold {Checkpoint} bytes",
            host.DenseWeightBytes, host.ExpertWeightBytes, System.IO.Directory.GetFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length));
        return host;
    }

    /// <summary>
    /// The chat template, parsed once: the --chat-template file, else the checkpoint's. A checkpoint whose template
    /// cannot be used still serves completions; chat requests get the reason.
    /// </summary>
    private static Func<ChatTemplate> LoadChatTemplate(string? file, TokenizerConfig config, ILogger logger)
    {
        string? source;
        try
        {
            source = file is null ? config.ChatTemplate : File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"--chat-template {file}: {e.Message}", e);
        }
        try
        {
            var template = MoeMesh.Engine.Text.ChatTemplate.FromJinja(source, config.BosToken ?? "", config.EosToken ?? "");
            return () => template;
        }
        catch (ChatTemplateException e) when (file is not null)
        {
            throw new InvalidDataException($"--chat-template {file}: {e.Message}", e);
        }
        catch (ChatTemplateException e)
        {
            logger.LogWarning("Chat completions are unavailable: {Reason}", e.Message);
            return () => throw e;
        }
    }
}
