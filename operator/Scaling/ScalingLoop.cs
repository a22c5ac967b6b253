using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Scaling;

/// <summary>
/// Samples the load of every tier that has bounds (min/max) from its ready pods' own /metrics (addresses from
/// the Services' EndpointSlices) and lets each tier's <see cref="Autoscaler"/> decide; a decision that changes a
/// count goes to the reconciler through <see cref="ScalingState"/>, to status, and out as an event (as does a
/// "no change" whose reason differs in kind from the tier's last decision).
/// Gateways: requests waiting plus running, KV-cache usage, or the mean time to first token. Expert nodes: the
/// fraction of time computing (rate of moemesh_expert_compute_seconds) and, when targeted, the mean queueing of a
/// dispatch (moemesh_expert_queue_seconds), as a multiple of their targets. Rates and means come from two samples
/// of a pod's counters, so a pod counts from its second sample on: a node still loading contributes neither
/// capacity nor load, and its cold start is not read as load.
/// </summary>
public sealed class ScalingLoop(ScalingState state, PodScraper pods, EventRecorder events, ScalingSettings settings, ILogger<ScalingLoop> logger)
{
    private readonly Dictionary<(string, string, string), Autoscaler> _autoscalers = [];
    private readonly Dictionary<(string Pod, string Metric), (double Value, DateTime At)> _counters = [];

    public Task RunAsync(Action<string, string> reconcile, CancellationToken ct) =>
        state.EveryTrackedAsync(settings.Interval, "Scaling", md => SampleAsync(md, reconcile, ct), logger, ct);

    private async Task SampleAsync(MoeDeployment md, Action<string, string> reconcile, CancellationToken ct)
    {
        var n = Names.Of(md);
        var now = DateTime.UtcNow;
        Forget(now);
        var counts = state.Counts(md);
        var s = md.Spec;
        var changed = false;
        if (s.Gateway is { Replicas: null, MinReplicas: { } gmin })
        {
            var metric = s.Scaling?.Gateway?.Metric ?? GatewayMetric.Requests;
            var target = s.Scaling?.Gateway?.Target ?? metric switch { GatewayMetric.Requests => 32, GatewayMetric.KvCacheUsage => 0.8, _ => 2.0 };
            var a = For(md, "gateway", Tuned(new AutoscalerSettings(target, gmin, s.Gateway.MaxReplicas ?? gmin), s.Scaling));
            var values = new List<double>();
            foreach (var pod in await pods.ReadyAsync(n.Namespace, n.Gateway, ct))
            {
                if (await pods.MetricsAsync(pod, ct) is not { } text) continue;
                double? value = metric switch
                {
                    GatewayMetric.Requests => (PrometheusText.Sum(text, "moemesh_requests_waiting") ?? 0) + (PrometheusText.Sum(text, "moemesh_requests_running") ?? 0),
                    GatewayMetric.KvCacheUsage => PrometheusText.Sum(text, "moemesh_kv_cache_usage_ratio") ?? 0,
                    _ => Mean(pod, text, "moemesh_time_to_first_token_seconds", now),
                };
                if (value is { } x) values.Add(x);
            }
            changed |= Decide(md, "gateway", a, values, counts.Gateways, floor: 0, now);
        }
        if (s.Experts is { Nodes: null, MinNodes: { } emin })
        {
            // Busy time and queueing as multiples of their targets; the tier scales on the larger.
            var busyTarget = s.Scaling?.Experts?.TargetBusy ?? 0.7;
            var queueTarget = s.Scaling?.Experts?.TargetQueueSeconds;
            var a = For(md, "experts", Tuned(new AutoscalerSettings(queueTarget is null ? busyTarget : 1, emin, s.Experts.MaxNodes ?? emin), s.Scaling));
            var values = new List<double>();
            foreach (var pod in await pods.ReadyAsync(n.Namespace, n.Experts, ct))
            {
                if (await pods.MetricsAsync(pod, ct) is not { } text) continue;
                var queue = queueTarget is { } q ? Mean(pod, text, "moemesh_expert_queue_seconds", now) / q : null;
                if (Rate(pod, text, "moemesh_expert_compute_seconds_sum", now) is not { } busy) continue;
                values.Add(queueTarget is null ? Math.Min(1, busy) : Math.Max(Math.Min(1, busy) / busyTarget, queue ?? 0));
            }
            changed |= Decide(md, "experts", a, values, counts.ExpertNodes, floor: s.Experts.MinReplicasPerExpert ?? 1, now);
        }
        if (changed) reconcile(n.Namespace, n.Instance);
    }

    /// <summary>The rate per second of a counter since the pod's previous sample; null on its first (or after a restart).</summary>
    private double? Rate(Uri pod, string text, string counter, DateTime now)
    {
        var (delta, seconds) = Delta(pod, text, counter, now);
        return delta is { } d && seconds > 0 ? d / seconds : null;
    }

    /// <summary>
    /// A histogram's mean over the observations since the pod's previous sample (0 when there were none); null on
    /// its first sample (or after a restart).
    /// </summary>
    private double? Mean(Uri pod, string text, string histogram, DateTime now)
    {
        var (sum, _) = Delta(pod, text, histogram + "_sum", now);
        var (count, _) = Delta(pod, text, histogram + "_count", now);
        return sum is null || count is null ? null : count > 0 ? sum / count : 0;
    }

    private (double? Delta, double Seconds) Delta(Uri pod, string text, string counter, DateTime now)
    {
        if (PrometheusText.Sum(text, counter) is not { } value) return (null, 0);
        var key = (pod.ToString(), counter);
        var had = _counters.TryGetValue(key, out var last);
        _counters[key] = (value, now);
        return had && now > last.At && value >= last.Value ? (value - last.Value, (now - last.At).TotalSeconds) : (null, 0);
    }

    /// <summary>Drops the counters of pods not sampled lately and the autoscalers of deployments no longer tracked.</summary>
    private void Forget(DateTime now)
    {
        var stale = now - 10 * settings.Interval - TimeSpan.FromMinutes(1);
        foreach (var key in _counters.Where(c => c.Value.At < stale).Select(c => c.Key).ToArray()) _counters.Remove(key);
        var tracked = state.Tracked().Select(m => (m.Metadata.NamespaceProperty ?? "default", m.Metadata.Name)).ToHashSet();
        foreach (var key in _autoscalers.Keys.Where(k => !tracked.Contains((k.Item1, k.Item2))).ToArray()) _autoscalers.Remove(key);
    }

    private bool Decide(MoeDeployment md, string tier, Autoscaler a, List<double> perPod, int current, int floor, DateTime now)
    {
        if (perPod.Count > 0) a.Observe(now, perPod.Sum());
        var d = a.Decide(now, current, perPod.Count, Math.Max(0, current - perPod.Count), floor);
        var recorded = state.Decide(md, tier, d);
        if (d.Changes)
            _ = events.RecordAsync(md, EventRecorder.Normal, d.Desired > d.Current ? "ScaledUp" : "ScaledDown",
                $"{tier}: {d.Current} -> {d.Desired}: {d.Reason}", CancellationToken.None);
        else if (recorded)
            _ = events.RecordAsync(md, EventRecorder.Normal, "ScalingUnchanged", $"{tier}: {d.Current}: {d.Reason}", CancellationToken.None);
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
