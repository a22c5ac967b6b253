using Prometheus;

namespace MoeMesh.Operator.Reconcile;

/// <summary>The operator's Prometheus series, served at /metrics.</summary>
public sealed class OperatorMetrics
{
    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();
    public Counter Reconciles { get; }
    public Histogram ReconcileSeconds { get; }
    public Gauge QueueDepth { get; }
    public Gauge Leader { get; }
    public Counter Applies { get; }
    public Counter Conflicts { get; }
    public Counter WatchRestarts { get; }
    public Counter LoadSourceErrors { get; }

    public OperatorMetrics()
    {
        var f = Metrics.WithCustomRegistry(Registry);
        Reconciles = f.CreateCounter("moemesh_operator_reconciles_total", "Reconciles, by result (ok, error).", new CounterConfiguration { LabelNames = ["result"] });
        ReconcileSeconds = f.CreateHistogram("moemesh_operator_reconcile_duration_seconds", "Time of one reconcile.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 14) });
        QueueDepth = f.CreateGauge("moemesh_operator_queue_depth", "MoeDeployments waiting for a reconcile.");
        Leader = f.CreateGauge("moemesh_operator_leader", "1 while this replica holds the leader Lease and acts; 0 while it stands by.");
        Applies = f.CreateCounter("moemesh_operator_applies_total", "Server-side applies of children, by kind.", new CounterConfiguration { LabelNames = ["kind"] });
        Conflicts = f.CreateCounter("moemesh_operator_conflicts_total", "Status writes refused with 409 Conflict and retried on the newer version.");
        LoadSourceErrors = f.CreateCounter("moemesh_operator_load_source_errors_total", "Queries of the configured Prometheus (--prometheus-url) that failed; the autoscaler has no samples meanwhile.");
        WatchRestarts = f.CreateCounter("moemesh_operator_watch_restarts_total", "Watches that ended with an error and were started again, by resource.", new CounterConfiguration { LabelNames = ["resource"] });
    }
}
