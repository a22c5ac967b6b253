using Prometheus;

namespace MoeMesh.Gateway.Metrics;

/// <summary>The gateway's Prometheus metrics, in one registry per gateway instance.</summary>
public sealed class GatewayMetrics
{
    private static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.001, 2, 16);

    public CollectorRegistry Registry { get; } = Prometheus.Metrics.NewCustomRegistry();
    public Gauge RequestsRunning { get; }
    public Gauge RequestsWaiting { get; }
    public Histogram TimeToFirstToken { get; }
    public Histogram InterTokenLatency { get; }
    public Histogram RequestLatency { get; }
    public Counter PromptTokens { get; }
    public Counter GenerationTokens { get; }
    public Gauge KvCacheUsage { get; }
    public Gauge WeightBytes { get; }
    public Gauge KvCacheBytes { get; }
    public Counter PrefixCacheQueries { get; }
    public Counter PrefixCacheHits { get; }
    public Counter RequestsFinished { get; }
    public Counter Rejected { get; }
    public Histogram DispatchSeconds { get; }
    public Counter DispatchErrors { get; }
    public Counter DispatchBytes { get; }
    public Counter ExpertWait { get; }
    public Gauge ExpertCoverage { get; }
    public Gauge ExpertNodesAvailable { get; }
    public Gauge DiscoveryUp { get; }
    public Gauge PlacementGenerationMin { get; }
    public Counter DiscoveryUpdates { get; }

    public GatewayMetrics()
    {
        var f = Prometheus.Metrics.WithCustomRegistry(Registry);
        RequestsRunning = f.CreateGauge("moemesh_requests_running", "Sequences being generated.");
        RequestsWaiting = f.CreateGauge("moemesh_requests_waiting", "Sequences waiting: submitted and not yet running (bounded by --max-queue).");
        TimeToFirstToken = f.CreateHistogram("moemesh_time_to_first_token_seconds", "Time from submission to the first generated token.", new HistogramConfiguration { Buckets = LatencyBuckets });
        InterTokenLatency = f.CreateHistogram("moemesh_inter_token_latency_seconds", "Time between consecutive tokens of a sequence.", new HistogramConfiguration { Buckets = LatencyBuckets });
        RequestLatency = f.CreateHistogram("moemesh_e2e_request_latency_seconds", "Time from submission to the last token of a sequence.", new HistogramConfiguration { Buckets = LatencyBuckets });
        PromptTokens = f.CreateCounter("moemesh_prompt_tokens_total", "Prompt tokens accepted.");
        GenerationTokens = f.CreateCounter("moemesh_generation_tokens_total", "Tokens generated.");
        KvCacheUsage = f.CreateGauge("moemesh_kv_cache_usage_ratio", "Fraction of KV-cache pages in use.");
        WeightBytes = f.CreateGauge("moemesh_weight_bytes", "Bytes of model weights held in this process, by part: dense (embedding, attention, routers, shared experts, dense MLPs, LM head) and routed_experts (those held in-process; 0 with expert nodes).", new GaugeConfiguration { LabelNames = ["part"] });
        KvCacheBytes = f.CreateGauge("moemesh_kv_cache_bytes", "Bytes of the latent KV cache (its pages, allocated at start).");
        PrefixCacheQueries = f.CreateCounter("moemesh_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
        PrefixCacheHits = f.CreateCounter("moemesh_prefix_cache_hits_total", "Prompt tokens found in the prefix cache (not recomputed).");
        RequestsFinished = f.CreateCounter("moemesh_sequences_finished_total", "Sequences ended, by reason.", new CounterConfiguration { LabelNames = ["reason"] });
        DispatchSeconds = f.CreateHistogram("moemesh_expert_dispatch_seconds", "Round trip of one dispatch to an expert node, by node.", new HistogramConfiguration { LabelNames = ["node"], Buckets = Histogram.ExponentialBuckets(0.0001, 2, 18) });
        DispatchErrors = f.CreateCounter("moemesh_expert_dispatch_errors_total", "Failed dispatches, by node and reason (timeout, transport or the HTTP status of a refusal).", new CounterConfiguration { LabelNames = ["node", "reason"] });
        DispatchBytes = f.CreateCounter("moemesh_expert_dispatch_bytes_total", "Dispatch payload bytes, by direction.", new CounterConfiguration { LabelNames = ["direction"] });
        ExpertWait = f.CreateCounter("moemesh_expert_wait_seconds_total", "Time the engine was blocked waiting for expert-node replies (dispatch latency not hidden by overlap).");
        ExpertCoverage = f.CreateGauge("moemesh_expert_coverage_ratio", "Fraction of (MoE layer, expert) pairs held by at least one available node; 1 with experts in-process.");
        ExpertNodesAvailable = f.CreateGauge("moemesh_expert_nodes_available", "Expert nodes that pass their health checks.");
        PlacementGenerationMin = f.CreateGauge("moemesh_expert_placement_generation_min", "Lowest placement generation among the expert nodes in the routing table (-1: one has none, or no node): a roll-out's next phase waits for it.");
        DiscoveryUp = f.CreateGauge("moemesh_expert_discovery_up", "1 while the EndpointSlice watch of --expert-discovery runs; 0 while the API server is unreachable (the last known nodes stay).");
        DiscoveryUpdates = f.CreateCounter("moemesh_expert_discovery_updates_total", "Node sets --expert-discovery handed to the routing table.");
        Rejected = f.CreateCounter("moemesh_requests_rejected_total", "Requests refused before generation, by HTTP status.", new CounterConfiguration { LabelNames = ["status"] });
    }
}
