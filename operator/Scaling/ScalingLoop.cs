using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Scaling;

/// <summary>
/// Samples the load of every tier that has bounds (min/max) from its ready pods' own /metrics (addresses from
/// the Services' EndpointSlices) and lets each tier's <see cref="Autoscaler"/> decide; a decision that changes a
/// count goes to the reconciler through <see cref="ScalingState"/>, to status, and out as an event.
/// Gateways: requests waiting plus running, or KV-cache usage. Expert nodes: the fraction of time computing,
/// from the rate of moemesh_expert_compute_seconds; a node is counted from its second sample on, so that a
/// node still loading contributes neither capacity nor load.
/// </summary>
public sealed class ScalingLoop(ScalingState state, PodScraper pods, EventRecorder events, ScalingSettings settings, ILogger<ScalingLoop> logger)
{
    private readonly Dictionary<(string, string, string), Autoscaler> _autoscalers = [];
    private readonly Dictionary<string, (double Sum, DateTime At)> _lastCompute = [];

    public Task RunAsync(Action<string, string> reconcile, CancellationToken ct) =>
        state.EveryTrackedAsync(settings.Interval, "Scaling", md => SampleAsync(md, reconcile, ct), logger, ct);

    private async Task SampleAsync(MoeDeployment md, Action<string, string> reconcile, CancellationToken ct)
    {
        var n = Names.Of(md);
        var now = DateTime.UtcNow;
        var counts = state.Counts(md);
        var s = md.Spec;
        var changed = false;
        if (s.Gateway is { Replicas: null, MinReplicas: { } gmin })
        {
            var metric = s.Scaling?.Gateway?.Metric ?? GatewayMetric.Requests;
            var target = s.Scaling?.Gateway?.Target ?? (metric == GatewayMetric.Requests ? 32 : 0.8);
            var a = For(md, "gateway", Tuned(new AutoscalerSettings(target, gmin, s.Gateway.MaxReplicas ?? gmin), s.Scaling));
            var values = new List<double>();
            foreach (var pod in await pods.ReadyAsync(n.Namespace, n.Gateway, ct))
                if (await pods.MetricsAsync(pod, ct) is { } text)
                    values.Add(metric == GatewayMetric.Requests
                        ? (PrometheusText.Sum(text, "moemesh_requests_waiting") ?? 0) + (PrometheusText.Sum(text, "moemesh_requests_running") ?? 0)
                        : PrometheusText.Sum(text, "moemesh_kv_cache_usage_ratio") ?? 0);
            changed |= Decide(md, "gateway", a, values, counts.Gateways, floor: 0, now);
        }
        if (s.Experts is { Nodes: null, MinNodes: { } emin })
        {
            var a = For(md, "experts", Tuned(new AutoscalerSettings(s.Scaling?.Experts?.TargetBusy ?? 0.7, emin, s.Experts.MaxNodes ?? emin), s.Scaling));
            var values = new List<double>();
            foreach (var pod in await pods.ReadyAsync(n.Namespace, n.Experts, ct))
            {
                if (await pods.MetricsAsync(pod, ct) is not { } text || PrometheusText.Sum(text, "moemesh_expert_compute_seconds_sum") is not { } sum) continue;
                var key = pod.ToString();
                if (_lastCompute.TryGetValue(key, out var last) && now > last.At && sum >= last.Sum)
                    values.Add(Math.Min(1, (sum - last.Sum) / (now - last.At).TotalSeconds));
                _lastCompute[key] = (sum, now);
            }
            changed |= Decide(md, "experts", a, values, counts.ExpertNodes, floor: s.Experts.MinReplicasPerExpert ?? 1, now);
        }
        if (changed) reconcile(n.Namespace, n.Instance);
    }

    private bool Decide(MoeDeployment md, string tier, Autoscaler a, List<double> perPod, int current, int floor, DateTime now)
    {
        if (perPod.Count > 0) a.Observe(now, perPod.Sum());
        var d = a.Decide(now, current, perPod.Count, Math.Max(0, current - perPod.Count), floor);
        var recorded = state.Decide(md, tier, d);
        if (d.Changes)
            _ = events.RecordAsync(md, EventRecorder.Normal, d.Desired > d.Current ? "ScaledUp" : "ScaledDown",
                $"{tier}: {d.Current} -> {d.Desired}: {d.Reason}", CancellationToken.None);
        return recorded;
    }

    private Autoscaler For(MoeDeployment md, string tier, AutoscalerSettings wanted)
    {
        var key = (md.Metadata.NamespaceProperty ?? "default", md.Metadata.Name, tier);
        if (!_autoscalers.TryGetValue(key, out var a) || a.Settings != wanted) _autoscalers[key] = a = new Autoscaler(wanted);
        return a;
    }

    private static AutoscalerSettings Tuned(AutoscalerSettings a, ScalingSpec? s) => s is null ? a : a with
    {
        StableWindow = s.StableWindowSeconds is { } st ? TimeSpan.FromSeconds(st) : null,
        PanicWindow = s.PanicWindowSeconds is { } p ? TimeSpan.FromSeconds(p) : null,
        PanicThreshold = s.PanicThreshold ?? a.PanicThreshold,
        Tolerance = s.Tolerance ?? a.Tolerance,
        ScaleDownStabilization = s.ScaleDownStabilizationSeconds is { } d ? TimeSpan.FromSeconds(d) : null,
        MaxStepUp = s.MaxScaleUpStep ?? a.MaxStepUp,
        MaxStepDown = s.MaxScaleDownStep ?? a.MaxStepDown,
    };

}

/// <summary>How often the tiers' load is sampled.</summary>
public sealed record ScalingSettings(TimeSpan Interval);
