using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Serialization;
using MoeMesh.Engine.Config;
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
    IReadOnlyList<ExpertNode> initial, string fingerprint, ModelConfig config, BearerKey? nodeKey, bool adminRoutes, InMemoryConfigProvider proxyConfig, ILogger<ExpertNodeDirectory> logger)
    : BackgroundService
{
    private static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(1);
    private const int MaxReportBytes = 4 << 20;
    // No redirects: the node key goes to the configured address and nowhere else.
    private readonly HttpClient _http = new(new SocketsHttpHandler { AllowAutoRedirect = false })
    {
        Timeout = TimeSpan.FromSeconds(5),
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

    /// <summary>The placement generation the node advertised in the holdings the table uses; null without one.</summary>
    public long? PlacementGeneration(string nodeId) => _generations.TryGetValue(nodeId, out var g) ? g : null;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _generations = new();

    /// <summary>The lowest placement generation among the nodes the routing table uses; -1 when one has none or there is no node.</summary>
    public long MinPlacementGeneration()
    {
        var routed = _table.Holdings.Keys.ToArray();
        return routed.Length == 0 ? -1 : routed.Min(id => _generations.TryGetValue(id, out var g) ? g : -1);
    }

    private sealed record PlacementReport([property: JsonPropertyName("generation")] long? Generation);

    private sealed record LayerHoldings([property: JsonPropertyName("layer")] int Layer, [property: JsonPropertyName("experts")] int[]? Experts);

    private sealed record NodeReport(
        [property: JsonPropertyName("model_fingerprint")] string? Fingerprint,
        [property: JsonPropertyName("ready")] bool Ready,
        [property: JsonPropertyName("layers")] LayerHoldings?[]? Layers,
        [property: JsonPropertyName("placement")] PlacementReport? Placement = null);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(RefreshInterval);
        try
        {
            do
            {
                // A poll that fails in a way nobody foresaw is logged and the next one runs: routing must keep following the nodes.
                try
                {
                    await RefreshAsync(stoppingToken);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    logger.LogError(e, "Polling the expert nodes' holdings failed; retrying in {Interval}", RefreshInterval);
                }
            }
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
            proxyConfig.Update(ExpertProxyConfig.Routes(_nodes, nodeKey, adminRoutes), ExpertProxyConfig.Clusters(_nodes));
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
            var (report, malformed) = reports[i];
            if (malformed is not null)
            {
                Refuse(node, malformed);
                continue;
            }
            if (report is null)
            {
                if (current.TryGetValue(node.Id, out var known)) next[node.Id] = known;
                continue;
            }
            if (report.Fingerprint != fingerprint)
            {
                Refuse(node, $"the node serves model {report.Fingerprint}, not {fingerprint}");
                continue;
            }
            if (!report.Ready)
            {
                _errors.TryRemove(node.Id, out _);
                continue;
            }
            if (Problem(report) is { } problem)
            {
                // A report that does not describe this model's experts is not trusted at all, not even in part.
                Refuse(node, $"the node's holdings report is malformed ({problem})");
                continue;
            }
            next[node.Id] = report.Layers!.ToDictionary(l => l!.Layer, l => (IReadOnlyList<int>)l!.Experts!.Order().ToArray());
            if (report.Placement?.Generation is { } generation) _generations[node.Id] = generation;
            else _generations.TryRemove(node.Id, out _);
            _errors.TryRemove(node.Id, out _);
        }
        if (!Same(current, next))
        {
            _table = new ExpertRoutingTable(next);
            logger.LogInformation("Expert routing table: {Nodes}", string.Join("; ", next.Select(n => $"{n.Key} holds {n.Value.Values.Sum(e => e.Count)} layer-experts")));
        }
    }

    /// <summary>What is wrong with a report's holdings; null when it names only MoE layers of this model, each once, with valid, distinct experts.</summary>
    private string? Problem(NodeReport report)
    {
        if (report.Layers is null) return "no layer list";
        var layers = new HashSet<int>();
        foreach (var l in report.Layers)
        {
            if (l is null) return "a null layer entry";
            if (l.Layer < 0 || l.Layer >= config.NumHiddenLayers || !config.IsMoeLayer(l.Layer)) return $"layer {l.Layer} is not a MoE layer of this model";
            if (!layers.Add(l.Layer)) return $"layer {l.Layer} is listed twice";
            if (l.Experts is null) return $"layer {l.Layer} has no expert list";
            if (l.Experts.Any(e => e < 0 || e >= config.NRoutedExperts)) return $"layer {l.Layer} names an expert outside 0..{config.NRoutedExperts - 1}";
            if (l.Experts.Distinct().Count() != l.Experts.Length) return $"layer {l.Layer} names an expert twice";
        }
        return null;
    }

    /// <summary>Leaves the node out of the table; logged once per distinct reason, shown in /admin/routing.</summary>
    private void Refuse(ExpertNode node, string why)
    {
        if (_errors.TryGetValue(node.Id, out var previous) && previous == why) return;
        _errors[node.Id] = why;
        logger.LogError("Expert node {Node} at {Address} is not used: {Why}", node.Id, node.Address, why);
    }

    /// <summary>The node's report; null when it did not answer (it keeps its last holdings) or answered something that is not a report (Malformed says what).</summary>
    private async Task<(NodeReport? Report, string? Malformed)> ReportAsync(ExpertNode node, CancellationToken ct)
    {
        try
        {
            using var response = await _http.GetAsync(new Uri(node.Address, "v1/experts"), HttpCompletionOption.ResponseHeadersRead, ct);
            response.EnsureSuccessStatusCode();
            // A report names each layer's experts once: a few hundred KB for DeepSeek-V3. More is not a report.
            using var body = new MemoryStream();
            await using (var stream = await response.Content.ReadAsStreamAsync(ct))
            {
                var chunk = new byte[64 << 10];
                for (int read; (read = await stream.ReadAsync(chunk, ct)) > 0;)
                {
                    if (body.Length + read > MaxReportBytes) return (null, $"the reply is larger than {MaxReportBytes} bytes");
                    body.Write(chunk, 0, read);
                }
            }
            var report = System.Text.Json.JsonSerializer.Deserialize<NodeReport>(body.GetBuffer().AsSpan(0, (int)body.Length));
            return report is null ? (null, "the reply is JSON null") : (report, null);
        }
        catch (System.Text.Json.JsonException e)
        {
            return (null, $"the reply is not a holdings report ({e.Message})");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            var refused = e is HttpRequestException { StatusCode: HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden };
            var error = refused ? $"the node refused the gateway's key ({e.Message}); set --expert-api-key to the nodes' --api-key" : e.Message;
            // A refused key is a configuration error, logged when it starts; an unreachable node is left to health checks.
            if (_errors.TryGetValue(node.Id, out var previous) && previous == error) return (null, null);
            _errors[node.Id] = error;
            if (refused) logger.LogError("Expert node {Node} at {Address}: {Error}", node.Id, node.Address, error);
            else logger.LogDebug("Expert node {Node} did not report its holdings: {Error}", node.Id, error);
            return (null, null);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Anything else this node's reply causes is this node's fault: it is refused, the others are still polled.
            return (null, $"the reply could not be read ({e.GetType().Name}: {e.Message})");
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
