using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Reconcile;

namespace MoeMesh.Operator.Scaling;

/// <summary>How a per-pod load signal is read from a pod's metrics.</summary>
public enum SignalKind
{
    /// <summary>The current value of gauges, summed.</summary>
    Gauge,
    /// <summary>The per-second rate of a counter.</summary>
    Rate,
    /// <summary>A histogram's mean observation over the recent past (0 when nothing was observed).</summary>
    Mean,
}

/// <summary>One load signal: a kind and the metric names (several gauges are summed; a histogram by its base name).</summary>
public sealed record Signal(SignalKind Kind, params string[] Metrics);

/// <summary>A ready pod of a tier: its name (from the EndpointSlice; null when it gives none) and base URL.</summary>
public sealed record ReadyPod(string? Name, Uri Url)
{
    public string Key => Name ?? Url.ToString();
}

/// <summary>
/// Where the autoscaler reads the tiers' load: the pods' own /metrics (<see cref="PodLoadSource"/>) or a
/// Prometheus server (<see cref="PrometheusLoadSource"/>). The pods are the tier's ready ones, so that a pod still
/// loading or leaving is neither capacity nor load.
/// </summary>
public interface ILoadSource
{
    /// <summary>
    /// Per ready pod (by <see cref="ReadyPod.Key"/>), the value of each signal; a pod is left out until every signal
    /// has a value for it (a rate or a mean needs two samples).
    /// </summary>
    Task<IReadOnlyDictionary<string, double[]>> SampleAsync(string ns, string service, IReadOnlyList<ReadyPod> pods, IReadOnlyList<Signal> signals, CancellationToken ct);
}

/// <summary>
/// Reads each ready pod's /metrics and derives rates and means from the change since the pod's previous sample.
/// </summary>
public sealed class PodLoadSource(PodScraper scraper, ScalingSettings settings) : ILoadSource
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Pod, string Metric), (double Value, DateTime At)> _counters = [];

    public async Task<IReadOnlyDictionary<string, double[]>> SampleAsync(string ns, string service, IReadOnlyList<ReadyPod> pods, IReadOnlyList<Signal> signals, CancellationToken ct)
    {
        var now = DateTime.UtcNow;
        Forget(now);
        var result = new Dictionary<string, double[]>();
        foreach (var pod in pods)
        {
            if (await scraper.MetricsAsync(pod.Url, ct) is not { } text) continue;
            var values = new double[signals.Count];
            var complete = true;
            // Every signal is read, also after one lacks a value, so that each starts counting from this sample.
            for (var i = 0; i < signals.Count; i++)
            {
                var s = signals[i];
                double? v = s.Kind switch
                {
                    SignalKind.Gauge => s.Metrics.Sum(m => PrometheusText.Sum(text, m) ?? 0),
                    SignalKind.Rate => Delta(pod, text, s.Metrics[0], now) is ({ } d, var seconds) && seconds > 0 ? d / seconds : null,
                    _ => (Delta(pod, text, s.Metrics[0] + "_sum", now).Delta, Delta(pod, text, s.Metrics[0] + "_count", now).Delta) switch
                    {
                        ({ } sum, { } count) => count > 0 ? sum / count : 0,
                        _ => null,
                    },
                };
                if (v is { } x) values[i] = x;
                else complete = false;
            }
            if (complete) result[pod.Key] = values;
        }
        return result;
    }

    private (double? Delta, double Seconds) Delta(ReadyPod pod, string text, string counter, DateTime now)
    {
        if (PrometheusText.Sum(text, counter) is not { } value) return (null, 0);
        lock (_lock)
        {
            var key = (pod.Url.ToString(), counter);
            var had = _counters.TryGetValue(key, out var last);
            _counters[key] = (value, now);
            // A counter that went down is a restarted pod: it counts again from its next sample.
            return had && now > last.At && value >= last.Value ? (value - last.Value, (now - last.At).TotalSeconds) : (null, 0);
        }
    }

    /// <summary>Drops the counters of pods not sampled lately.</summary>
    private void Forget(DateTime now)
    {
        var stale = now - 10 * settings.Interval - TimeSpan.FromMinutes(1);
        lock (_lock)
            foreach (var key in _counters.Where(c => c.Value.At < stale).Select(c => c.Key).ToArray()) _counters.Remove(key);
    }
}

/// <summary>
/// Reads the tiers' load from a Prometheus server's query API (GET /api/v1/query), for clusters that scrape the
/// pods already (a ServiceMonitor, as the chart's): series are matched by the labels namespace, service (the
/// tier's Service) and pod, as the Prometheus Operator sets them; rates and means are taken over the configured
/// window. Only the tier's ready pods count. When Prometheus does not answer, no pod has a sample (the autoscaler
/// decides "no change"), and moemesh_operator_load_source_errors_total counts it.
/// </summary>
public sealed class PrometheusLoadSource(Uri prometheus, TimeSpan window, OperatorMetrics metrics, ILogger<PrometheusLoadSource> logger) : ILoadSource, IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = prometheus, Timeout = TimeSpan.FromSeconds(5) };

    public async Task<IReadOnlyDictionary<string, double[]>> SampleAsync(string ns, string service, IReadOnlyList<ReadyPod> pods, IReadOnlyList<Signal> signals, CancellationToken ct)
    {
        var ready = pods.Where(p => p.Name is not null).Select(p => p.Name!).ToHashSet();
        var perSignal = new List<Dictionary<string, double>>();
        foreach (var s in signals)
        {
            var values = new Dictionary<string, double>();
            foreach (var query in Queries(s, Selector(ns, service)))
            {
                if (await QueryAsync(query, ct) is not { } result) return new Dictionary<string, double[]>();
                foreach (var (pod, v) in result)
                    values[pod] = values.GetValueOrDefault(pod) + (double.IsNaN(v) ? 0 : v); // a mean with no observations: 0
            }
            perSignal.Add(values);
        }
        return ready.Where(p => perSignal.All(v => v.ContainsKey(p))).ToDictionary(p => p, p => perSignal.Select(v => v[p]).ToArray());
    }

    private static string Selector(string ns, string service) => $"{{namespace=\"{ns}\",service=\"{service}\"}}";

    private IEnumerable<string> Queries(Signal s, string selector)
    {
        var w = $"[{(int)Math.Ceiling(window.TotalSeconds)}s]";
        return s.Kind switch
        {
            SignalKind.Gauge => s.Metrics.Select(m => $"sum by (pod) ({m}{selector})"),
            SignalKind.Rate => [$"sum by (pod) (rate({s.Metrics[0]}{selector}{w}))"],
            _ => [$"sum by (pod) (rate({s.Metrics[0]}_sum{selector}{w})) / sum by (pod) (rate({s.Metrics[0]}_count{selector}{w}))"],
        };
    }

    /// <summary>An instant query's value per pod; null when Prometheus does not answer or refuses the query.</summary>
    private async Task<IReadOnlyList<(string Pod, double Value)>?> QueryAsync(string query, CancellationToken ct)
    {
        try
        {
            using var response = await _http.GetAsync("api/v1/query?query=" + Uri.EscapeDataString(query), ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            using var doc = JsonDocument.Parse(body);
            if (!response.IsSuccessStatusCode || doc.RootElement.GetProperty("status").GetString() != "success")
                throw new HttpRequestException($"{(int)response.StatusCode}: {(doc.RootElement.TryGetProperty("error", out var e) ? e.GetString() : body)}");
            return doc.RootElement.GetProperty("data").GetProperty("result").EnumerateArray()
                .Where(r => r.GetProperty("metric").TryGetProperty("pod", out _))
                .Select(r => (r.GetProperty("metric").GetProperty("pod").GetString()!,
                    double.Parse(r.GetProperty("value")[1].GetString()!, NumberStyles.Float, CultureInfo.InvariantCulture)))
                .ToArray();
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException or FormatException
            || e is TaskCanceledException && !ct.IsCancellationRequested)
        {
            metrics.LoadSourceErrors.Inc();
            logger.LogWarning("Prometheus query {Query}: {Error}", query, e.Message);
            return null;
        }
    }

    public void Dispose() => _http.Dispose();
}
