using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace MoeMesh.Operator.Scaling;

/// <summary>Reads the pods of a Service: their ready endpoints (EndpointSlices) and what they serve over HTTP.</summary>
public sealed class PodScraper(IKubernetes client, ILogger<PodScraper> logger) : IDisposable
{
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(2) };

    /// <summary>
    /// The Service's ready endpoints (a missing ready condition counts as ready, as the API defines it), or all of
    /// them with <paramref name="readyOnly"/> false, with the slice that lists them.
    /// </summary>
    public async Task<IReadOnlyList<(V1Endpoint Endpoint, V1EndpointSlice Slice)>> ReadyEndpointsAsync(string ns, string service, CancellationToken ct, bool readyOnly = true)
    {
        var slices = await client.DiscoveryV1.ListNamespacedEndpointSliceAsync(ns, labelSelector: $"kubernetes.io/service-name={service}", cancellationToken: ct);
        return slices.Items.SelectMany(s => (s.Endpoints ?? []).Where(e => !readyOnly || e.Conditions?.Ready != false).Select(e => (e, s))).ToArray();
    }

    /// <summary>Base URLs of the Service's ready endpoints.</summary>
    public async Task<IReadOnlyList<Uri>> ReadyAsync(string ns, string service, CancellationToken ct) =>
        (await ReadyPodsAsync(ns, service, ct)).Select(p => p.Url).ToArray();

    /// <summary>The Service's ready endpoints: the pod's name (from targetRef or hostname; null when neither is set) and base URL.</summary>
    public async Task<IReadOnlyList<ReadyPod>> ReadyPodsAsync(string ns, string service, CancellationToken ct)
    {
        var pods = new List<ReadyPod>();
        foreach (var (e, slice) in await ReadyEndpointsAsync(ns, service, ct))
            if ((slice.Ports?.FirstOrDefault(p => p.Name == "http") ?? slice.Ports?.FirstOrDefault())?.Port is { } port && e.Addresses is { Count: > 0 } a)
                pods.Add(new ReadyPod(e.TargetRef?.Name ?? e.Hostname, new Uri(slice.AddressType == "IPv6" ? $"http://[{a[0]}]:{port}/" : $"http://{a[0]}:{port}/")));
        return pods;
    }

    public Task<string?> MetricsAsync(Uri pod, CancellationToken ct) => GetAsync(pod, "metrics", ct);

    /// <summary>The body of GET <paramref name="path"/> on the pod; null when it does not answer 200 in time.</summary>
    public async Task<string?> GetAsync(Uri pod, string path, CancellationToken ct)
    {
        try
        {
            return await _http.GetStringAsync(new Uri(pod, path), ct);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            logger.LogDebug("Reading {Path} of {Pod}: {Error}", path, pod, e.Message);
            return null;
        }
    }

    public void Dispose() => _http.Dispose();
}
