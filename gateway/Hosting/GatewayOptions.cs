namespace MoeMesh.Gateway.Hosting;

/// <summary>The gateway's settings; each is a command-line option, a configuration key and a MOEMESH_ variable.</summary>
public sealed record GatewayOptions
{
    /// <summary>Hugging Face checkpoint folder; null serves the built-in demo model.</summary>
    public string? Model { get; init; }
    public string ServedModelName { get; init; } = "";
    public string? ExpertNodes { get; init; }
    public int ExpertTimeoutMs { get; init; } = 10_000;

    /// <summary>Micro-batches per step; null: 2 with expert nodes (dispatch overlaps attention), 1 in-process.</summary>
    public int? MicroBatches { get; init; }
    public int MicroBatchMinTokens { get; init; } = 64;
    public bool PrefixCaching { get; init; } = true;
    public string KvStore { get; init; } = "memory";
    public string Device { get; init; } = "cpu";
    public string? ApiKey { get; init; }

    /// <summary>The expert nodes' --api-key, presented on dispatch, holdings polls and proxied admin requests.</summary>
    public string? ExpertApiKey { get; init; }
    public long KvCacheBytes { get; init; } = 256L << 20;
    public int MaxBatchTokens { get; init; } = 512;
    public int MaxRunning { get; init; } = 64;
    public int MaxQueue { get; init; } = 256;
    public int? MaxModelLen { get; init; }
    public string CacheDir { get; init; } = DefaultCacheDir();

    /// <summary>Command-line options with their help text, in --help order.</summary>
    public static readonly (string Option, string Key, string Help)[] Options =
    [
        ("--model DIR", "model", "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json). Without it, a demo model is generated into the cache folder."),
        ("--urls URL", "urls", "Listen address (default http://127.0.0.1:8080)."),
        ("--expert-nodes URL[,URL...]", "expert-nodes", "Expert-node base URLs; absent: all experts in-process."),
        ("--expert-api-key KEY", "expert-api-key", "The expert nodes' --api-key, sent as 'Authorization: Bearer KEY' to them (default: none)."),
        ("--expert-timeout-ms N", "expert-timeout-ms", "Deadline of one dispatch to an expert node before it is retried elsewhere (default 10000)."),
        ("--micro-batches 1|2", "micro-batches", "Split each step into two micro-batches whose expert dispatches overlap the other's attention (default: 2 with --expert-nodes, else 1)."),
        ("--micro-batch-min-tokens N", "micro-batch-min-tokens", "Split a step only when each micro-batch gets at least N tokens (default 64)."),
        ("--prefix-caching on|off", "prefix-caching", "Reuse the KV-cache pages of prompt prefixes computed before (default on)."),
        ("--kv-store memory|redis://HOST:PORT[/DB]", "kv-store", "Where KV-cache pages are shared (default memory)."),
        ("--device cpu|cuda[:N]", "device", "Compute device (default cpu; cuda computes in bfloat16)."),
        ("--api-key KEY", "api-key", "Require 'Authorization: Bearer KEY' on /v1 and /admin endpoints."),
        ("--served-model-name NAME", "served-model-name", "Model id reported by /v1/models (default: the folder name)."),
        ("--kv-cache-bytes N", "kv-cache-bytes", "Bytes of memory for the latent KV cache (default 268435456)."),
        ("--max-batch-tokens N", "max-batch-tokens", "Token budget of one engine step (default 512)."),
        ("--max-running N", "max-running", "Most sequences generating at once (default 64)."),
        ("--max-queue N", "max-queue", "Most sequences waiting; beyond it requests get 429 (default 256)."),
        ("--max-model-len N", "max-model-len", "Cap on prompt plus output tokens (default: model and cache limit)."),
        ("--cache-dir DIR", "cache-dir", "Folder for the generated demo model (default ~/.cache/moemesh)."),
    ];

    public static GatewayOptions FromConfiguration(IConfiguration configuration)
    {
        var c = new Lookup(configuration);
        static long? Long(Lookup c, string key) =>
            c[key] is { } v ? long.TryParse(v, out var l) && l > 0 ? l : throw new ArgumentException($"--{key} must be a positive integer, got '{v}'") : null;
        var defaults = new GatewayOptions();
        return new GatewayOptions
        {
            Model = c["model"],
            ServedModelName = c["served-model-name"] ?? "",
            ExpertNodes = c["expert-nodes"],
            ExpertTimeoutMs = (int)(Long(c, "expert-timeout-ms") ?? defaults.ExpertTimeoutMs),
            MicroBatchMinTokens = (int)(Long(c, "micro-batch-min-tokens") ?? defaults.MicroBatchMinTokens),
            MicroBatches = Long(c, "micro-batches") switch
            {
                null => null,
                { } m when m is 1 or 2 => (int)m,
                var m => throw new ArgumentException($"--micro-batches must be 1 or 2, got {m}"),
            },
            PrefixCaching = c["prefix-caching"] switch
            {
                null or "on" => true,
                "off" => false,
                var v => throw new ArgumentException($"--prefix-caching must be on or off, got '{v}'"),
            },
            KvStore = c["kv-store"] ?? defaults.KvStore,
            Device = c["device"] ?? defaults.Device,
            ApiKey = c["api-key"],
            ExpertApiKey = c["expert-api-key"],
            KvCacheBytes = Long(c, "kv-cache-bytes") ?? defaults.KvCacheBytes,
            MaxBatchTokens = (int)(Long(c, "max-batch-tokens") ?? defaults.MaxBatchTokens),
            MaxRunning = (int)(Long(c, "max-running") ?? defaults.MaxRunning),
            MaxQueue = (int)(Long(c, "max-queue") ?? defaults.MaxQueue),
            MaxModelLen = (int?)Long(c, "max-model-len"),
            CacheDir = c["cache-dir"] ?? defaults.CacheDir,
        };
    }

    /// <summary>Reads "kv-store" also as KV_STORE, the spelling environment variables allow.</summary>
    private readonly struct Lookup(IConfiguration c)
    {
        public string? this[string key] => c[key] ?? c[key.Replace('-', '_')];
    }

    private static string DefaultCacheDir()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : xdg;
        return Path.Combine(root, "moemesh");
    }
}
