using MoeMesh.Engine.Dispatch;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Health;

namespace MoeMesh.Gateway.Routing;

/// <summary>
/// The YARP configuration for the expert tier: one cluster of all nodes (active health checks on
/// /healthz, passive health fed by failed dispatches, least-outstanding-work balancing) and, per node,
/// an admin route /admin/nodes/{id}/{**path} proxying its /metrics and /v1/experts.
/// </summary>
public static class ExpertProxyConfig
{
    public const string ClusterId = "expert-nodes";
    public const string AdminPrefix = "/admin/nodes";
    public static readonly TimeSpan HealthInterval = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan ReactivationPeriod = TimeSpan.FromSeconds(2);

    public static IReadOnlyList<ClusterConfig> Clusters(IReadOnlyList<ExpertNode> nodes) =>
    [
        new ClusterConfig
        {
            ClusterId = ClusterId,
            LoadBalancingPolicy = LeastOutstandingWorkPolicy.PolicyName,
            HealthCheck = new HealthCheckConfig
            {
                Active = new ActiveHealthCheckConfig
                {
                    Enabled = true, Interval = HealthInterval, Timeout = HealthInterval,
                    Policy = HealthCheckConstants.ActivePolicy.ConsecutiveFailures, Path = "/healthz",
                },
                Passive = new PassiveHealthCheckConfig
                {
                    Enabled = true, Policy = HealthCheckConstants.PassivePolicy.TransportFailureRate, ReactivationPeriod = ReactivationPeriod,
                },
            },
            Destinations = nodes.ToDictionary(n => n.Id, n => new DestinationConfig { Address = n.Address.ToString() }),
        },
        .. nodes.Select(n => new ClusterConfig
        {
            ClusterId = AdminCluster(n),
            Destinations = new Dictionary<string, DestinationConfig> { [n.Id] = new() { Address = n.Address.ToString() } },
        }),
    ];

    /// <summary>
    /// The admin routes; none without an admin key (the proxy still runs: its health checks keep the nodes
    /// available). The client's Authorization header (the gateway's own key) is never passed on: the node gets
    /// the nodes' key when there is one, no Authorization header otherwise.
    /// </summary>
    public static IReadOnlyList<RouteConfig> Routes(IReadOnlyList<ExpertNode> nodes, BearerKey? nodeKey, bool admin) =>
        !admin ? [] : nodes.SelectMany(n => new[] { "metrics", "v1/experts" }.Select(path => new RouteConfig
        {
            RouteId = $"{AdminCluster(n)}-{path.Replace('/', '-')}",
            ClusterId = AdminCluster(n),
            Match = new RouteMatch { Path = $"{AdminPrefix}/{n.Id}/{path}", Methods = ["GET"] },
            Transforms =
            [
                new Dictionary<string, string> { ["PathRemovePrefix"] = $"{AdminPrefix}/{n.Id}" },
                nodeKey is null
                    ? new Dictionary<string, string> { ["RequestHeaderRemove"] = "Authorization" }
                    : new Dictionary<string, string> { ["RequestHeader"] = "Authorization", ["Set"] = nodeKey.HeaderValue },
            ],
        })).ToList();

    private static string AdminCluster(ExpertNode n) => $"admin-{n.Id}";
}
