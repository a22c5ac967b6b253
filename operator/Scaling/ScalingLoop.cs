using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Scaling;

/// <summary>
/// Samples the load of every tier that has bounds (min/max) from its ready pods (addresses from the Services'
/// EndpointSlices) through the <see cref="ILoadSource"/> (the pods' own /metrics, or Prometheus) and lets each
/// tier's <see cref="Autoscaler"/> decide; a decision that changes a count goes to the reconciler through
/// <see cref="ScalingState"/>, to status, and out as an event (as does a "no change" whose reason differs in kind
/// from the tier's last decision).
/// Gateways: requests waiting plus running, KV-cache usage, or the mean time to first token. Expert nodes: the
/// fraction of time computing (rate of moemesh_expert_compute_seconds) and, when targeted, the mean queueing of a
/// dispatch (moemesh_expert_queue_seconds), as a multiple of their targets. A pod counts once each signal has a
/// value for it (rates and means need two samples): a node still loading contributes neither capacity nor load,
/// and its cold start is not read as load.
/// </summary>
public sealed class ScalingLoop(ScalingState state, PodScraper pods, ILoadSource source, EventRecorder events, ScalingSettings settings, ILogger<ScalingLoop> logger)
{
    private static readonly Signal Compute = new(SignalKind.Rate, "moemesh_expert_compute_seconds_sum");
    private static readonly Signal Queue = new(SignalKind.Mean, "moemesh_expert_queue_seconds");
    private readonly Dictionary<(string, string, string), Autoscaler> _autoscalers = [];

    public Task RunAsync(Action<string, string> reconcile, CancellationToken ct) =>
        state.EveryTrackedAsync(settings.Interval, "Scaling", md => SampleAsync(md, reconcile, ct), logger, ct);

    private async Task SampleAsync(MoeDeployment md, Action<string, string> reconcile, CancellationToken ct)
    {
        var n = Names.Of(md);
        var now = DateTime.UtcNow;
        Forget();
        var counts = state.Counts(md);
        var s = md.Spec;
        var changed = false;
        if (s.Gateway is { Replicas: null, MinReplicas: { } gmin })
        {
            var metric = s.Scaling?.Gateway?.Metric ?? GatewayMetric.Requests;
            var target = s.Scaling?.Gateway?.Target ?? metric switch { GatewayMetric.Requests => 32, GatewayMetric.KvCacheUsage => 0.8, _ => 2.0 };
            var a = For(md, "gateway", Tuned(new AutoscalerSettings(target, gmin, s.Gateway.MaxReplicas ?? gmin), s.Scaling));
            var signal = metric switch
            {
                GatewayMetric.Requests => new Signal(SignalKind.Gauge, "moemesh_requests_waiting", "moemesh_requests_running"),
                GatewayMetric.KvCacheUsage => new Signal(SignalKind.Gauge, "moemesh_kv_cache_usage_ratio"),
                _ => new Signal(SignalKind.Mean, "moemesh_time_to_first_token_seconds"),
            };
            var sampled = await source.SampleAsync(n.Namespace, n.Gateway, await pods.ReadyPodsAsync(n.Namespace, n.Gateway, ct), [signal], ct);
            changed |= Decide(md, "gateway", a, sampled.Values.Select(v => v[0]).ToList(), counts.Gateways, floor: 0, now);
        }
        if (s.Experts is { Nodes: null, MinNodes: { } emin })
        {
            // Busy time and queueing as multiples of their targets; the tier scales on the larger.
            var busyTarget = s.Scaling?.Experts?.TargetBusy ?? 0.7;
            var queueTarget = s.Scaling?.Experts?.TargetQueueSeconds;
            var a = For(md, "experts", Tuned(new AutoscalerSettings(queueTarget is null ? busyTarget : 1, emin, s.Experts.MaxNodes ?? emin), s.Scaling));
            Signal[] signals = queueTarget is null ? [Compute] : [Compute, Queue];
            var sampled = await source.SampleAsync(n.Namespace, n.Experts, await pods.ReadyPodsAsync(n.Namespace, n.Experts, ct), signals, ct);
            var values = sampled.Values.Select(v => queueTarget is { } q ? Math.Max(Math.Min(1, v[0]) / busyTarget, v[1] / q) : Math.Min(1, v[0])).ToList();
            changed |= Decide(md, "experts", a, values, counts.ExpertNodes, floor: s.Experts.MinReplicasPerExpert ?? 1, now);
        }
        if (changed) reconcile(n.Namespace, n.Instance);
    }

    /// <summary>Drops the autoscalers of deployments no longer tracked.</summary>
    private void Forget()
    {
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
