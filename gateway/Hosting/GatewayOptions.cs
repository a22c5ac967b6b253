using MoeMesh.Cli;
using MoeMesh.Gateway.KvStore;
using MoeMesh.Gateway.Routing;

namespace MoeMesh.Gateway.Hosting;

/// <summary>The gateway's settings; each is a command-line option and a MOEMESH_ variable (see <see cref="CommandLine"/>).</summary>
public sealed record GatewayOptions
{
    public const string DefaultUrl = "http://127.0.0.1:8080";

    /// <summary>Hugging Face checkpoint folder; null serves the built-in demo model.</summary>
    public string? Model { get; init; }
    public string Urls { get; init; } = DefaultUrl;
    public string ServedModelName { get; init; } = "";

    /// <summary>Expert-node base URLs; null runs every expert in-process (unless discovery finds them).</summary>
    public IReadOnlyList<Uri>? ExpertNodes { get; init; }

    /// <summary>The Kubernetes Service whose EndpointSlices list the expert nodes; null without discovery.</summary>
    public ExpertDiscoveryTarget? ExpertDiscovery { get; init; }

    /// <summary>Kubeconfig for discovery; null: $KUBECONFIG, ~/.kube/config, then the pod's service account.</summary>
    public string? Kubeconfig { get; init; }

    /// <summary>Whether experts run on expert nodes (a static list or discovered ones) rather than in-process.</summary>
    public bool RemoteExperts => ExpertNodes is not null || ExpertDiscovery is not null;
    public int ExpertTimeoutMs { get; init; } = 10_000;

    /// <summary>Micro-batches per step; null: 2 with expert nodes (dispatch overlaps attention), 1 in-process.</summary>
    public int? MicroBatches { get; init; }
    public int MicroBatchMinTokens { get; init; } = 64;
    public bool PrefixCaching { get; init; } = true;
    public const string MemoryStore = "memory";

    /// <summary>Where KV pages are shared: <see cref="MemoryStore"/> (not shared) or a Redis URL.</summary>
    public string KvStore { get; init; } = MemoryStore;

    /// <summary>Redis password kept out of the URL (e.g. from a Secret through MOEMESH_KV_STORE_PASSWORD); overrides one in the URL.</summary>
    public string? KvStorePassword { get; init; }
    public string KvStorePrefix { get; init; } = "moemesh";
    public int KvStoreTtlSeconds { get; init; } = 86_400;
    public int KvStoreLookupBudgetMs { get; init; } = 250;
    public long KvStoreWriteQueueBytes { get; init; } = 64L << 20;
    public string Device { get; init; } = "cpu";

    /// <summary>How routed experts held here run on the CPU: auto (default), libtorch on float32 copies, or packed (the engine's kernel on the weights as stored).</summary>
    public string CpuExperts { get; init; } = "auto";

    /// <summary>How the dense weights run on the CPU: auto (default), libtorch on float32 copies, or packed (kept as stored, the engine's kernel for decode).</summary>
    public string CpuDense { get; init; } = "auto";

    /// <summary>Bearer key of the inference API (/v1); null leaves it open.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Bearer key of the operator routes (/admin); null turns them off.</summary>
    public string? AdminApiKey { get; init; }

    /// <summary>The expert nodes' --api-key, presented on dispatch, holdings polls and proxied admin requests.</summary>
    public string? ExpertApiKey { get; init; }
    public long KvCacheBytes { get; init; } = 256L << 20;
    public int MaxBatchTokens { get; init; } = 512;
    public int MaxRunning { get; init; } = 64;
    public int MaxQueue { get; init; } = 256;
    public int? MaxModelLen { get; init; }

    /// <summary>Largest request body accepted; larger ones get 413.</summary>
    public long MaxRequestBytes { get; init; } = 8L << 20;

    /// <summary>
    /// Whether special-token text written inside chat message content (role markers, BOS/EOS) becomes those
    /// tokens, as Hugging Face's chat-template path does; by default it is plain text, as OpenAI's API treats it.
    /// </summary>
    public bool SpecialTokensInContent { get; init; }

    /// <summary>Whether chat responses split a reasoning model's "&lt;think&gt;" block into reasoning_content (--reasoning-parser deepseek_r1).</summary>
    public bool ReasoningParser { get; init; }

    /// <summary>A Jinja chat template file used instead of the checkpoint's chat_template (--chat-template, as vLLM's).</summary>
    public string? ChatTemplate { get; init; }

    public string CacheDir { get; init; } = MoeMesh.Engine.Demo.DemoModel.DefaultCacheRoot();

    /// <summary>The shared store's settings; null with --kv-store memory.</summary>
    public KvStoreSettings? KvStoreSettings => KvStore == MemoryStore ? null
        : new(KvStore, KvStorePrefix, TimeSpan.FromSeconds(KvStoreTtlSeconds), TimeSpan.FromMilliseconds(KvStoreLookupBudgetMs), KvStoreWriteQueueBytes, KvStorePassword);

    /// <summary>Reads the command line and MOEMESH_ variables; null when --help was asked for. Throws <see cref="CommandLineException"/>.</summary>
    public static GatewayOptions? Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        var (cli, read) = Declare();
        var parsed = cli.Parse(args, environment);
        if (parsed.HelpRequested) return null;
        var options = read(parsed);
        if (options.KvStore != MemoryStore && !options.PrefixCaching)
            throw cli.Error("--kv-store shares the prefix cache's pages between gateways: it needs --prefix-caching on");
        if (options.ExpertNodes is not null && options.ExpertDiscovery is not null)
            throw cli.Error("give the expert nodes either as --expert-nodes or through --expert-discovery, not both");
        return options;
    }

    /// <summary>The --help text.</summary>
    public static string Usage() => Declare().Cli.Usage();

    private static (CommandLine Cli, Func<ParsedCommandLine, GatewayOptions> Read) Declare()
    {
        var d = new GatewayOptions();
        var cli = new CommandLine("moemesh-gateway", "OpenAI-compatible server for DeepSeek-V2/V3 mixture-of-experts models.");
        var model = cli.Add("--model", "DIR", "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json); without it a demo model is generated into the cache folder", Values.OptionalText, d.Model);
        var urls = cli.Add("--urls", "URL", $"Listen address (default {DefaultUrl})", Values.Text, d.Urls);
        var nodes = cli.Add<IReadOnlyList<Uri>?>("--expert-nodes", "URL[,URL...]", "Expert-node base URLs; absent: all experts in-process", NodeList, null);
        var discovery = cli.Add<ExpertDiscoveryTarget?>("--expert-discovery", "k8s://NAMESPACE/SERVICE",
            "Expert nodes from the ready endpoints of a Kubernetes Service's EndpointSlices, followed as they change (instead of --expert-nodes)", ExpertDiscoveryTarget.Parse, null);
        var kubeconfig = cli.Add<string?>("--kubeconfig", "FILE", "Kubeconfig for --expert-discovery (default: $KUBECONFIG, ~/.kube/config, then the pod's service account)", Values.OptionalText, null);
        var nodeKey = cli.Add("--expert-api-key", "KEY", "The expert nodes' --api-key, sent to them as 'Authorization: Bearer KEY'", Values.OptionalText, d.ExpertApiKey);
        var timeout = cli.Add("--expert-timeout-ms", "N", "Deadline of one dispatch to an expert node before it is retried elsewhere (default 10000)", Values.PositiveInt, d.ExpertTimeoutMs);
        var micro = cli.Add<int?>("--micro-batches", "1|2", "Split each step into two micro-batches whose expert dispatches overlap the other's attention (default: 2 with --expert-nodes, else 1)",
            v => v is "1" or "2" ? int.Parse(v) : throw new FormatException("expected 1 or 2"), null);
        var microMin = cli.Add("--micro-batch-min-tokens", "N", "Split a step only when each micro-batch gets at least N tokens (default 64)", Values.PositiveInt, d.MicroBatchMinTokens);
        var prefix = cli.Add("--prefix-caching", "on|off", "Reuse the KV-cache pages of prompt prefixes computed before (default on)", Values.OnOff, d.PrefixCaching);
        var kvStore = cli.Add("--kv-store", "memory|URL", $"Where KV-cache pages are shared between gateways: memory (default: not shared) or {RedisUrl.Syntax}",
            StoreUrl, d.KvStore);
        var kvPassword = cli.Add<string?>("--kv-store-password", "TEXT", "Redis password, kept out of the URL (set MOEMESH_KV_STORE_PASSWORD from a Secret)", Values.OptionalText, null);
        var kvPrefix = cli.Add("--kv-store-prefix", "TEXT", $"Prefix of the shared store's keys (default {d.KvStorePrefix}); deployments sharing one Redis keep theirs apart with it", Values.Text, d.KvStorePrefix);
        var kvTtl = cli.Add("--kv-store-ttl-seconds", "N", $"Time a shared page lives after it was last used by any gateway (renewed at most every eighth of it; default {d.KvStoreTtlSeconds})", Values.PositiveInt, d.KvStoreTtlSeconds);
        var kvBudget = cli.Add("--kv-store-lookup-budget-ms", "N", $"Longest a prompt waits for the shared store before it is computed (default {d.KvStoreLookupBudgetMs})", Values.PositiveInt, d.KvStoreLookupBudgetMs);
        var kvQueue = cli.Add("--kv-store-write-queue-bytes", "N", $"Computed pages waiting to be written to the shared store, at most (default {d.KvStoreWriteQueueBytes}); beyond it pages are not shared", Values.PositiveLong, d.KvStoreWriteQueueBytes);
        var device = cli.Add("--device", "cpu|cuda[:N]", "Compute device (default cpu; cuda computes in bfloat16)", Values.Device, d.Device);
        var cpuExperts = cli.Add("--cpu-experts", "auto|libtorch|packed", "Routed experts held here on the CPU: packed, the engine's kernel over the checkpoint's BF16 or FP8 weights as stored (a half or a quarter of the memory of float32 copies), or libtorch on float32 copies; auto (default) is packed where the CPU has AVX2 and FMA", Values.OneOf("auto", "libtorch", "packed"), d.CpuExperts);
        var cpuDense = cli.Add("--cpu-dense", "auto|libtorch|packed", "Dense weights (attention, shared experts, dense MLPs, embedding, LM head) on the CPU: packed, kept as the checkpoint stores them (BF16: half the memory) and computed in the engine's kernel for decode-sized batches, widened for libtorch's GEMM for prefill chunks, or libtorch on float32 copies; auto (default) is packed where the CPU has AVX2 and FMA", Values.OneOf("auto", "libtorch", "packed"), d.CpuDense);
        var apiKey = cli.Add("--api-key", "KEY", "Require 'Authorization: Bearer KEY' on /v1 (default: open)", Values.OptionalText, d.ApiKey);
        var adminKey = cli.Add("--admin-api-key", "KEY", "Require 'Authorization: Bearer KEY' on /admin; without it the admin routes are off", Values.OptionalText, d.AdminApiKey);
        var name = cli.Add("--served-model-name", "NAME", "Model id reported by /v1/models (default: the folder name)", Values.Text, d.ServedModelName);
        var kvBytes = cli.Add("--kv-cache-bytes", "N", "Bytes of memory for the latent KV cache (default 268435456)", Values.PositiveLong, d.KvCacheBytes);
        var batch = cli.Add("--max-batch-tokens", "N", "Token budget of one engine step (default 512)", Values.PositiveInt, d.MaxBatchTokens);
        var running = cli.Add("--max-running", "N", "Most sequences generating at once (default 64)", Values.PositiveInt, d.MaxRunning);
        var queue = cli.Add("--max-queue", "N", "Most sequences waiting; beyond it requests get 429 (default 256)", Values.PositiveInt, d.MaxQueue);
        var maxLen = cli.Add<int?>("--max-model-len", "N", "Cap on prompt plus output tokens (default: model and cache limit)", v => Values.PositiveInt(v), null);
        var maxBody = cli.Add("--max-request-bytes", "N", "Largest request body; larger ones get 413 (default 8388608)", Values.PositiveLong, d.MaxRequestBytes);
        var specials = cli.Add("--special-tokens-in-content", "plain|special", "Special-token text inside chat message content: plain text (default, as OpenAI) or the special tokens (as the Hugging Face template path)",
            v => v switch { "plain" => false, "special" => true, _ => throw new FormatException("expected plain or special") }, d.SpecialTokensInContent);
        var reasoning = cli.Add("--reasoning-parser", "none|deepseek_r1", "Chat responses of a reasoning model: deepseek_r1 returns the text up to </think> as reasoning_content (as vLLM's parser); none (default) leaves it in content",
            v => v switch { "none" => false, "deepseek_r1" => true, _ => throw new FormatException("expected none or deepseek_r1") }, d.ReasoningParser);
        var template = cli.Add("--chat-template", "FILE", "Jinja chat template used instead of the chat_template in the checkpoint's tokenizer_config.json (as vLLM's option)", Values.Text, d.ChatTemplate);
        var cacheDir = cli.Add("--cache-dir", "DIR", "Folder for the generated demo model (default ~/.cache/moemesh)", Values.Text, d.CacheDir);
        return (cli, p => new GatewayOptions
        {
            Model = p.Get(model),
            Urls = p.Get(urls),
            ExpertNodes = p.Get(nodes),
            ExpertDiscovery = p.Get(discovery),
            Kubeconfig = p.Get(kubeconfig),
            KvStorePassword = p.Get(kvPassword),
            ExpertApiKey = p.Get(nodeKey),
            ExpertTimeoutMs = p.Get(timeout),
            MicroBatches = p.Get(micro),
            MicroBatchMinTokens = p.Get(microMin),
            PrefixCaching = p.Get(prefix),
            KvStore = p.Get(kvStore),
            KvStorePrefix = p.Get(kvPrefix),
            KvStoreTtlSeconds = p.Get(kvTtl),
            KvStoreLookupBudgetMs = p.Get(kvBudget),
            KvStoreWriteQueueBytes = p.Get(kvQueue),
            Device = p.Get(device),
            CpuExperts = p.Get(cpuExperts),
            CpuDense = p.Get(cpuDense),
            ApiKey = p.Get(apiKey),
            AdminApiKey = p.Get(adminKey),
            ServedModelName = p.Get(name),
            KvCacheBytes = p.Get(kvBytes),
            MaxBatchTokens = p.Get(batch),
            MaxRunning = p.Get(running),
            MaxQueue = p.Get(queue),
            MaxModelLen = p.Get(maxLen),
            MaxRequestBytes = p.Get(maxBody),
            SpecialTokensInContent = p.Get(specials),
            ReasoningParser = p.Get(reasoning),
            ChatTemplate = p.Get(template),
            CacheDir = p.Get(cacheDir),
        });
    }

    private static IReadOnlyList<Uri> NodeList(string text)
    {
        try
        {
            return ExpertNode.ParseAddresses(text.Split(','));
        }
        catch (ArgumentException e)
        {
            throw new FormatException(e.Message);
        }
    }

    private static string StoreUrl(string text)
    {
        if (text != MemoryStore) RedisUrl.Parse(text);
        return text;
    }
}
