using Prometheus;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>The expert node's Prometheus metrics, in their own registry.</summary>
public sealed class NodeMetrics
{
    private static readonly double[] SecondsBuckets = Histogram.ExponentialBuckets(0.0001, 2, 18);

    public CollectorRegistry Registry { get; } = Prometheus.Metrics.NewCustomRegistry();
    public Counter ExpertTokens { get; }
    public Histogram ComputeSeconds { get; }
    public Histogram QueueSeconds { get; }
    public Histogram BatchTokens { get; }
    public Counter Rejected { get; }
    public Gauge ExpertBytes { get; }
    public Counter PlacementChanges { get; }
    public Gauge PlacementGeneration { get; }

    public NodeMetrics()
    {
        var f = Prometheus.Metrics.WithCustomRegistry(Registry);
        ExpertTokens = f.CreateCounter("moemesh_expert_tokens_total", "Tokens computed, by layer and expert.", new CounterConfiguration { LabelNames = ["layer", "expert"] });
        ComputeSeconds = f.CreateHistogram("moemesh_expert_compute_seconds", "Compute time of one dispatch.", new HistogramConfiguration { Buckets = SecondsBuckets });
        QueueSeconds = f.CreateHistogram("moemesh_expert_queue_seconds", "Time a dispatch waited for the compute thread (dispatches run one at a time, in arrival order).", new HistogramConfiguration { Buckets = SecondsBuckets });
        BatchTokens = f.CreateHistogram("moemesh_expert_batch_tokens", "Tokens per dispatch.", new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 2, 14) });
        Rejected = f.CreateCounter("moemesh_expert_dispatch_rejected_total", "Dispatches refused, by error code.", new CounterConfiguration { LabelNames = ["code"] });
        ExpertBytes = f.CreateGauge("moemesh_expert_weight_bytes", "Bytes of expert weights held.");
        PlacementGeneration = f.CreateGauge("moemesh_expert_placement_generation", "Generation of the placement document advertised (-1: none, or --experts).");
        PlacementGeneration.Set(-1);
        PlacementChanges = f.CreateCounter("moemesh_expert_placement_changes_total", "Placement changes, by result (applied, failed).", new CounterConfiguration { LabelNames = ["result"] });
    }
}
