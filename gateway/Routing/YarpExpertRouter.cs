using System.Diagnostics;
using System.Net.Http.Headers;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using MoeMesh.Gateway.Metrics;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace MoeMesh.Gateway.Routing;

/// <summary>
/// The remote expert backend's view of the expert tier, on YARP's model: candidates are the cluster's
/// available (healthy) destinations that hold the expert, chosen by the cluster's load-balancing
/// policy; a failed dispatch marks its destination unhealthy (passive health) until the reactivation
/// period passes and the active /healthz probe succeeds.
/// </summary>
public sealed class YarpExpertRouter(
    ExpertNodeDirectory directory, string fingerprint, BearerKey? nodeKey, TimeSpan timeout, long maxReplyBytes, GatewayMetrics metrics, ILogger<YarpExpertRouter> logger)
    : IExpertRouter, IDisposable
{
    // No redirects (the node key goes to configured addresses only); replies are bounded by the largest a step can ask for.
    private readonly HttpClient _http = new(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2), PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5), AllowAutoRedirect = false })
    {
        Timeout = Timeout.InfiniteTimeSpan,
        MaxResponseContentBufferSize = maxReplyBytes,
        DefaultRequestHeaders = { Authorization = nodeKey is null ? null : AuthenticationHeaderValue.Parse(nodeKey.HeaderValue) },
    };
    // Picks happen on the engine thread only, so one context carries the plan to the policy.
    private readonly DefaultHttpContext _pickContext = new();
    private IProxyStateLookup? _state;
    private IDestinationHealthUpdater? _health;
    private ILoadBalancingPolicy? _policy;

    public string Fingerprint => fingerprint;

    /// <summary>Attaches YARP's services once the host is built.</summary>
    public void Bind(IServiceProvider services)
    {
        _state = services.GetRequiredService<IProxyStateLookup>();
        _health = services.GetRequiredService<IDestinationHealthUpdater>();
        _policy = services.GetServices<ILoadBalancingPolicy>().First(p => p.Name == LeastOutstandingWorkPolicy.PolicyName);
    }

    /// <summary>The nodes YARP currently considers available (not failed by active or passive health).</summary>
    public IReadOnlySet<string> AvailableNodes() =>
        Cluster() is { } c ? c.DestinationsState.AvailableDestinations.Select(d => d.DestinationId).ToHashSet() : new HashSet<string>();

    public string? Pick(int layer, int expert, IReadOnlySet<string> excluded, IReadOnlyDictionary<string, int> planned)
    {
        if (Cluster() is not { } cluster || _policy is null) return null;
        var holders = directory.Table.Holders(layer, expert);
        var candidates = cluster.DestinationsState.AvailableDestinations
            .Where(d => !excluded.Contains(d.DestinationId) && holders.Contains(d.DestinationId))
            .ToList();
        if (candidates.Count == 0) return null;
        _pickContext.Items[LeastOutstandingWorkPolicy.PlannedWork] = planned;
        return _policy.PickDestination(_pickContext, cluster, candidates)?.DestinationId;
    }

    public async Task<byte[]> SendAsync(string node, int layer, byte[] message)
    {
        var cluster = Cluster() ?? throw new ExpertNodeException(node, "the expert cluster is not configured");
        // The node set may have changed since the pick.
        if (!cluster.Destinations.TryGetValue(node, out var destination) || directory.Nodes.FirstOrDefault(n => n.Id == node) is not { } configured)
            throw new ExpertNodeException(node, "no longer configured");
        var address = configured.Address;
        Track(destination, +1);
        var started = Stopwatch.GetTimestamp();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            using var content = new ByteArrayContent(message);
            content.Headers.ContentType = new MediaTypeHeaderValue(DispatchCodec.ContentType);
            using var response = await _http.PostAsync(new Uri(address, "v1/dispatch"), content, deadline.Token).ConfigureAwait(false);
            var body = await response.Content.ReadAsByteArrayAsync(deadline.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                // The node is up but refused the message (wrong model, expert not held, malformed): go elsewhere.
                metrics.DispatchErrors.WithLabels(node, ((int)response.StatusCode).ToString()).Inc();
                throw new ExpertNodeException(node, $"refused with {(int)response.StatusCode}: {System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(body.Length, 1024)))}");
            }
            metrics.DispatchSeconds.WithLabels(node).Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            metrics.DispatchBytes.WithLabels("sent").Inc(message.Length);
            metrics.DispatchBytes.WithLabels("received").Inc(body.Length);
            return body;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            var why = deadline.IsCancellationRequested ? $"no reply within {timeout.TotalSeconds:0.###} s" : e.Message;
            metrics.DispatchErrors.WithLabels(node, deadline.IsCancellationRequested ? "timeout" : "transport").Inc();
            logger.LogWarning("Dispatch of layer {Layer} to {Node} failed ({Error}); marking it unhealthy", layer, node, why);
            _health?.SetPassive(cluster, destination, DestinationHealth.Unhealthy, ExpertProxyConfig.ReactivationPeriod);
            throw new ExpertNodeException(node, why, e);
        }
        finally
        {
            Track(destination, -1);
        }
    }

    private ClusterState? Cluster() => _state is not null && _state.TryGetCluster(ExpertProxyConfig.ClusterId, out var c) ? c : null;

    private static void Track(DestinationState destination, int delta)
    {
        lock (destination) destination.ConcurrentRequestCount += delta;
    }

    public void Dispose() => _http.Dispose();
}
