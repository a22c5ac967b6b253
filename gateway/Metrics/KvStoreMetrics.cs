using Prometheus;

namespace MoeMesh.Gateway.Metrics;

/// <summary>Metrics of the shared KV page store (--kv-store redis://...), in the gateway's registry.</summary>
public sealed class KvStoreMetrics
{
    private static readonly double[] RoundTripBuckets = Histogram.ExponentialBuckets(0.0001, 2, 18);

    public Counter Lookups { get; }
    public Counter HitPages { get; }
    public Counter HitTokens { get; }
    public Counter MissPages { get; }
    public Counter DiscardedPages { get; }
    public Counter RejectedPages { get; }
    public Counter ReadBytes { get; }
    public Histogram ReadSeconds { get; }
    public Counter WrittenPages { get; }
    public Counter WrittenBytes { get; }
    public Histogram WriteSeconds { get; }
    public Gauge WriteQueuePages { get; }
    public Counter WriteDroppedPages { get; }
    public Counter Errors { get; }
    public Gauge Up { get; }

    public KvStoreMetrics(GatewayMetrics gateway)
    {
        var f = Prometheus.Metrics.WithCustomRegistry(gateway.Registry);
        Lookups = f.CreateCounter("moemesh_kv_store_lookups_total", "Prompt lookups in the shared store, by result (hit: every page asked for; partial; miss; rejected; timeout: over the lookup budget; error; unavailable: store down).", new CounterConfiguration { LabelNames = ["result"] });
        HitPages = f.CreateCounter("moemesh_kv_store_hit_pages_total", "Pages read from the shared store that passed every check.");
        HitTokens = f.CreateCounter("moemesh_kv_store_hit_tokens_total", "Prompt tokens whose latents came from the shared store.");
        MissPages = f.CreateCounter("moemesh_kv_store_miss_pages_total", "Pages looked up and not served by the shared store (absent, rejected, or past a miss, a timeout or an error).");
        DiscardedPages = f.CreateCounter("moemesh_kv_store_discarded_pages_total", "Pages read from the shared store and verified but not imported: the prefix before them was evicted meanwhile, or the cache was full.");
        RejectedPages = f.CreateCounter("moemesh_kv_store_rejected_pages_total", "Stored pages that failed a check and were not used, by reason.", new CounterConfiguration { LabelNames = ["reason"] });
        ReadBytes = f.CreateCounter("moemesh_kv_store_read_bytes_total", "Bytes of page values read from the shared store.");
        ReadSeconds = f.CreateHistogram("moemesh_kv_store_read_seconds", "Round trip of one pipelined read of pages.", new HistogramConfiguration { Buckets = RoundTripBuckets });
        WrittenPages = f.CreateCounter("moemesh_kv_store_written_pages_total", "Pages sent to the shared store, by result (stored; present: another gateway had written it).", new CounterConfiguration { LabelNames = ["result"] });
        WrittenBytes = f.CreateCounter("moemesh_kv_store_written_bytes_total", "Bytes of page values written to the shared store.");
        WriteSeconds = f.CreateHistogram("moemesh_kv_store_write_seconds", "Round trip of one pipelined write of pages.", new HistogramConfiguration { Buckets = RoundTripBuckets });
        WriteQueuePages = f.CreateGauge("moemesh_kv_store_write_queue_pages", "Computed pages waiting to be written to the shared store.");
        WriteDroppedPages = f.CreateCounter("moemesh_kv_store_write_dropped_pages_total", "Computed pages not written, by reason (queue_full, unavailable, error).", new CounterConfiguration { LabelNames = ["reason"] });
        Errors = f.CreateCounter("moemesh_kv_store_errors_total", "Failed store operations, by operation (lookup, write, import).", new CounterConfiguration { LabelNames = ["operation"] });
        Up = f.CreateGauge("moemesh_kv_store_up", "1 while the shared store is connected, 0 while it is not (requests are then computed locally).");
    }
}
