using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Serialization;
using MoeMesh.Engine.Dispatch;
using Yarp.ReverseProxy.Configuration;

namespace MoeMesh.Gateway.Routing;

/// <summary>
/// Asks every configured node what it holds (GET /v1/experts) at start and then every second, and
/// swaps in a new <see cref="ExpertRoutingTable"/> when holdings change. A node serving another model
/// is left out. An unreachable node keeps its last known holdings: health decides whether it is used.
/// Nodes join and leave through <see cref="SetNodesAsync"/>, which swaps YARP's configuration too.
/// </summary>
public sealed class ExpertNodeDirectory(
    IReadOnlyList<ExpertNode> initial, string fingerprint, BearerKey? nodeKey, InMemoryConfigProvider proxyConfig, ILogger<ExpertNodeDirectory> logger)
    : BackgroundService
{
    private static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(1);
    private readonly HttpClient _http = new()
    {
        Timeout = TimeSpan.FromSeconds(2),
        DefaultRequestHeaders = { Authorization = nodeKey is null ? null : AuthenticationHeaderValue.Parse(nodeKey.HeaderValue) },
    };
    private readonly ConcurrentDictionary<string, string> _errors = new();
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private volatile ExpertRoutingTable _table = ExpertRoutingTable.Empty;
    private volatile IReadOnlyList<ExpertNode> _nodes = initial;

    public IReadOnlyList<ExpertNode> Nodes => _nodes;
    public ExpertRoutingTable Table => _table;

    /// <summary>Why the node's last holdings poll failed; null when it answered.</summary>
    public string? LastError(string nodeId) => _errors.GetValueOrDefault(nodeId);

    private sealed record LayerHoldings([property: JsonPropertyName("layer")] int Layer, [property: JsonPropertyName("experts")] int[] Experts);

    private sealed record NodeReport(
        [property: JsonPropertyName("model_fingerprint")] string Fingerprint,
        [property: JsonPropertyName("ready")] bool Ready,
        [property: JsonPropertyName("layers")] LayerHoldings[] Layers);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(RefreshInterval);
        try
        {
            do await RefreshAsync(stoppingToken);
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Replaces the node set: YARP's destinations (health, admin routes) and then the routing table.</summary>
    public async Task<IReadOnlyList<ExpertNode>> SetNodesAsync(IReadOnlyList<Uri> addresses, CancellationToken ct)
    {
        await _refreshing.WaitAsync(ct);
        try
        {
            _nodes = ExpertNode.Reconcile(_nodes, addresses);
            proxyConfig.Update(ExpertProxyConfig.Routes(_nodes, nodeKey), ExpertProxyConfig.Clusters(_nodes));
            logger.LogInformation("Expert nodes: {Nodes}", string.Join(", ", _nodes.Select(n => $"{n.Id}={n.Address}")));
        }
        finally
        {
            _refreshing.Release();
        }
        await RefreshAsync(ct);
        return _nodes;
    }

    /// <summary>Polls every node once and swaps the table if anything changed.</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        await _refreshing.WaitAsync(ct);
        try
        {
            await PollAsync(ct);
        }
        finally
        {
            _refreshing.Release();
        }
    }

    private async Task PollAsync(CancellationToken ct)
    {
        var nodes = _nodes;
        var current = _table.Holdings;
        var reports = await Task.WhenAll(nodes.Select(n => ReportAsync(n, ct)));
        var next = new Dictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>>();
        for (var i = 0; i < nodes.Count; i++)
        {
            var node = nodes[i];
            var report = reports[i];
            if (report is null)
            {
                if (current.TryGetValue(node.Id, out var known)) next[node.Id] = known;
                continue;
            }
            if (report.Fingerprint != fingerprint)
            {
                logger.LogError("Expert node {Node} at {Address} serves model {Theirs}, not {Ours}; it is not used", node.Id, node.Address, report.Fingerprint, fingerprint);
                continue;
            }
            if (report.Ready) next[node.Id] = report.Layers.ToDictionary(l => l.Layer, l => (IReadOnlyList<int>)l.Experts.Order().ToArray());
        }
        if (!Same(current, next))
        {
            _table = new ExpertRoutingTable(next);
            logger.LogInformation("Expert routing table: {Nodes}", string.Join("; ", next.Select(n => $"{n.Key} holds {n.Value.Values.Sum(e => e.Count)} layer-experts")));
        }
    }

    private async Task<NodeReport?> ReportAsync(ExpertNode node, CancellationToken ct)
    {
        try
        {
            var report = await _http.GetFromJsonAsync<NodeReport>(new Uri(node.Address, "v1/experts"), ct);
            _errors.TryRemove(node.Id, out _);
            return report;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException && !ct.IsCancellationRequested)
        {
            var refused = e is HttpRequestException { StatusCode: HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden };
            var error = refused ? $"the node refused the gateway's key ({e.Message}); set --expert-api-key to the nodes' --api-key" : e.Message;
            // A refused key is a configuration error, logged when it starts; an unreachable node is left to health checks.
            if (_errors.TryGetValue(node.Id, out var previous) && previous == error) return null;
            _errors[node.Id] = error;
            if (refused) logger.LogError("Expert node {Node} at {Address}: {Error}", node.Id, node.Address, error);
            else logger.LogDebug("Expert node {Node} did not report its holdings: {Error}", node.Id, error);
            return null;
        }
    }

    private static bool Same(IReadOnlyDictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>> a, IReadOnlyDictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>> b) =>
        a.Count == b.Count && a.All(n => b.TryGetValue(n.Key, out var other) && n.Value.Count == other.Count
            && n.Value.All(l => other.TryGetValue(l.Key, out var experts) && experts.SequenceEqual(l.Value)));

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }
}
