namespace MoeMesh.Operator.Scaling;

/// <summary>
/// How a tier scales on one load metric (summed over its ready pods): the target per pod, the bounds, and
/// Knative's windows (a stable window, a short panic window that reacts to surges, tolerance around the
/// target) with Kubernetes HPA's scale-down stabilisation and step limits.
/// </summary>
public sealed record AutoscalerSettings(
    double TargetPerPod, int Min, int Max,
    TimeSpan? StableWindow = null, TimeSpan? PanicWindow = null, double PanicThreshold = 2.0, double Tolerance = 0.1,
    TimeSpan? ScaleDownStabilization = null, int MaxStepUp = 4, int MaxStepDown = 1)
{
    public TimeSpan Stable => StableWindow ?? TimeSpan.FromSeconds(60);
    public TimeSpan Panic => PanicWindow ?? TimeSpan.FromSeconds(6);
    public TimeSpan DownStabilization => ScaleDownStabilization ?? TimeSpan.FromMinutes(5);
}

/// <summary>One decision, with the inputs it was taken on: what status and events show.</summary>
public sealed record ScalingDecision(DateTime At, int Current, int Desired, string Reason, double StableLoad, double PanicLoad, int Ready, int Pending, bool Panicking)
{
    public bool Changes => Desired != Current;
}

/// <summary>
/// Decides a tier's replica count from load samples. Samples are the metric summed over the pods that are ready:
/// pods still loading count neither as capacity nor as load, so a cold start neither inflates nor dilutes the
/// signal. A pod that stays Pending is reported and does not stop decisions. Deterministic: the clock is an input.
/// </summary>
public sealed class Autoscaler(AutoscalerSettings settings)
{
    private readonly List<(DateTime At, double Total)> _samples = [];
    private readonly List<(DateTime At, int Desired)> _recommendations = [];
    private DateTime? _panicSince;

    public AutoscalerSettings Settings => settings;

    /// <summary>Records the metric summed over the ready pods at <paramref name="at"/>.</summary>
    public void Observe(DateTime at, double total)
    {
        _samples.Add((at, Math.Max(0, total)));
        var horizon = at - settings.Stable - settings.Panic;
        _samples.RemoveAll(s => s.At < horizon);
    }

    /// <summary>
    /// The replica count wanted now. <paramref name="floor"/> is a lower bound from elsewhere (the expert tier's
    /// coverage: enough nodes for every expert's minimum holders).
    /// </summary>
    public ScalingDecision Decide(DateTime now, int current, int ready, int pending, int floor = 0)
    {
        var min = Math.Max(settings.Min, floor);
        var stable = Average(now, settings.Stable);
        var panic = Average(now, settings.Panic);
        ScalingDecision Result(int desired, string reason) =>
            new(now, current, desired, reason, stable ?? 0, panic ?? 0, ready, pending, _panicSince is not null);
        var waiting = pending > 0 ? $"; {pending} pod(s) not ready yet" : "";

        if (current < min) return Result(min, $"below the minimum of {min}{(floor > settings.Min ? " (expert coverage)" : "")}");
        if (current > settings.Max) return Result(settings.Max, $"above the maximum of {settings.Max}");
        if (stable is null || panic is null) return Result(current, $"no change: no load samples in the last {settings.Stable.TotalSeconds:0} s yet{waiting}");

        var capacity = Math.Max(ready, 1);
        var stableWant = (int)Math.Ceiling(stable.Value / settings.TargetPerPod);
        var panicWant = (int)Math.Ceiling(panic.Value / settings.TargetPerPod);
        // Panic: the short window asks for at least twice the ready pods. While panicking the tier never shrinks.
        if (panicWant >= settings.PanicThreshold * capacity && panicWant > current) _panicSince = now;
        else if (_panicSince is { } since && now - since >= settings.Stable) _panicSince = null;

        int want;
        string why;
        if (_panicSince is not null)
        {
            want = Math.Max(current, Math.Max(panicWant, stableWant));
            why = panicWant >= settings.PanicThreshold * capacity
                ? $"panic: {panic:0.##} over the last {settings.Panic.TotalSeconds:0} s is at least {settings.PanicThreshold:0.#}x what {capacity} ready pod(s) carry at {settings.TargetPerPod:0.##} each"
                : $"panic mode since {_panicSince:HH:mm:ss}, held for {settings.Stable.TotalSeconds:0} s: no scale-down; {stable:0.##} over {settings.Stable.TotalSeconds:0} s needs {stableWant} pod(s)";
        }
        else
        {
            var ratio = stable.Value / (settings.TargetPerPod * capacity);
            if (Math.Abs(ratio - 1) <= settings.Tolerance && ready >= current)
                return Remember(Result(current, $"no change: {stable:0.##} over {settings.Stable.TotalSeconds:0} s is within {settings.Tolerance:P0} of {settings.TargetPerPod:0.##} per pod x {capacity}{waiting}"));
            want = stableWant;
            why = $"{stable:0.##} over {settings.Stable.TotalSeconds:0} s needs {stableWant} pod(s) at {settings.TargetPerPod:0.##} each";
        }
        _recommendations.Add((now, want));
        _recommendations.RemoveAll(r => r.At < now - settings.DownStabilization);
        if (want < current)
        {
            // Scale down only to the highest recommendation of the stabilisation window, one step at a time.
            var held = _recommendations.Max(r => r.Desired);
            if (held >= current) return Result(current, $"no change: {why}, but the last {settings.DownStabilization.TotalMinutes:0.#} min asked for {held}{waiting}");
            want = Math.Max(held, current - settings.MaxStepDown);
            why += held > stableWant ? $" (held at {held} by the last {settings.DownStabilization.TotalMinutes:0.#} min)" : "";
        }
        else if (want > current) want = Math.Min(want, current + settings.MaxStepUp);
        want = Math.Clamp(want, min, Math.Max(min, settings.Max));
        if (want == current) return Result(current, $"no change: {why}{waiting}");
        return Result(want, (want > current ? "scale up: " : "scale down: ") + why + waiting);
    }

    private ScalingDecision Remember(ScalingDecision d)
    {
        _recommendations.Add((d.At, d.Desired));
        _recommendations.RemoveAll(r => r.At < d.At - settings.DownStabilization);
        return d;
    }

    private double? Average(DateTime now, TimeSpan window)
    {
        var inWindow = _samples.Where(s => s.At > now - window && s.At <= now).ToArray();
        return inWindow.Length == 0 ? null : inWindow.Average(s => s.Total);
    }
}
