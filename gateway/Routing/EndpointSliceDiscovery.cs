using k8s;
using k8s.Models;
using MoeMesh.Gateway.Metrics;

namespace MoeMesh.Gateway.Routing;

/// <summary>
/// --expert-discovery: watches the EndpointSlices of the expert nodes' Service and hands the ready endpoints to
/// <see cref="ExpertNodeDirectory.SetNodesAsync"/>, the path --expert-nodes and PUT /admin/nodes take. A node that
/// turns not-ready (its pod is terminating or failing its probe) leaves routing at once, while it still serves
/// what was sent to it. When the API server is unreachable the last known nodes stay: discovery degrades to a
/// static list (moemesh_expert_discovery_up is 0) and recovers by itself.
/// </summary>
public sealed class EndpointSliceDiscovery(
    IKubernetes client, ExpertDiscoveryTarget target, ExpertNodeDirectory directory, GatewayMetrics metrics, ILogger<EndpointSliceDiscovery> logger) : BackgroundService
{
    private static readonly TimeSpan RetryBase = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan RetryMax = TimeSpan.FromSeconds(30);
    /// <summary>Watches end and start again from the current state this often.</summary>
    private static readonly TimeSpan WatchPeriod = TimeSpan.FromMinutes(5);

    private readonly Dictionary<string, V1EndpointSlice> _slices = [];
    private IReadOnlyList<Uri> _applied = [];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        var selector = $"kubernetes.io/service-name={target.Service}";
        while (!stoppingToken.IsCancellationRequested)
        {
            using var period = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            period.CancelAfter(WatchPeriod);
            try
            {
                // The whole set first, applied at once, then the changes from that version: a restart never routes to a partial set.
                var list = await client.DiscoveryV1.ListNamespacedEndpointSliceAsync(target.Namespace, labelSelector: selector, cancellationToken: period.Token);
                _slices.Clear();
                foreach (var slice in list.Items) _slices[slice.Metadata.Name] = slice;
                metrics.DiscoveryUp.Set(1);
                failures = 0;
                await ApplyAsync(stoppingToken);
                var events = client.DiscoveryV1.WatchListNamespacedEndpointSliceAsync(target.Namespace,
                    labelSelector: selector, resourceVersion: list.Metadata.ResourceVersion, cancellationToken: period.Token);
                await foreach (var (type, slice) in events.WithCancellation(period.Token))
                {
                    if (type == WatchEventType.Deleted) _slices.Remove(slice.Metadata.Name);
                    else if (type is WatchEventType.Added or WatchEventType.Modified) _slices[slice.Metadata.Name] = slice;
                    else continue;
                    await ApplyAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (period.IsCancellationRequested && !stoppingToken.IsCancellationRequested)
            {
                continue;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                metrics.DiscoveryUp.Set(0);
                var delay = TimeSpan.FromTicks(Math.Min(RetryMax.Ticks, RetryBase.Ticks << Math.Min(failures++, 16)));
                logger.LogWarning("Expert discovery ({Target}) failed, keeping the {Count} known nodes and retrying in {Delay:0.0} s: {Error}",
                    target, _applied.Count, delay.TotalSeconds, e.Message);
                try
                {
                    await Task.Delay(delay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task ApplyAsync(CancellationToken ct)
    {
        var nodes = ReadyAddresses(_slices.Values);
        if (nodes.SequenceEqual(_applied)) return;
        await directory.SetNodesAsync(nodes, ct);
        _applied = nodes;
        metrics.DiscoveryUpdates.Inc();
        logger.LogInformation("Expert discovery ({Target}): {Count} ready nodes", target, nodes.Count);
    }

    /// <summary>
    /// The base URLs of the ready endpoints (a missing ready condition counts as ready, as the API defines it), in a
    /// stable order; a pod listed in several slices (dual-stack: an IPv4 and an IPv6 one) counts once, by IPv4.
    /// </summary>
    public static IReadOnlyList<Uri> ReadyAddresses(IEnumerable<V1EndpointSlice> slices)
    {
        var byPod = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var slice in slices.OrderBy(s => s.AddressType == "IPv4" ? 0 : 1).ThenBy(s => s.Metadata?.Name, StringComparer.Ordinal))
        {
            var port = slice.Ports?.FirstOrDefault(p => p.Name == "http") ?? (slice.Ports?.Count == 1 ? slice.Ports[0] : null);
            if (port?.Port is not { } number) continue;
            foreach (var endpoint in slice.Endpoints ?? [])
            {
                if (endpoint.Conditions?.Ready == false || endpoint.Conditions?.Terminating == true) continue;
                if (endpoint.Addresses is not { Count: > 0 } addresses) continue;
                var address = addresses[0];
                var pod = endpoint.TargetRef?.Uid ?? endpoint.TargetRef?.Name ?? endpoint.Hostname ?? address;
                byPod.TryAdd(pod, slice.AddressType == "IPv6" ? $"http://[{address}]:{number}/" : $"http://{address}:{number}/");
            }
        }
        return byPod.Values.Order(StringComparer.Ordinal).Select(u => new Uri(u)).ToArray();
    }
}
