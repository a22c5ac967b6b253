using System.Net;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Tests.Chart;

/// <summary>
/// The chart's NetworkPolicies evaluated with Kubernetes' semantics (a pod selected by a policy of a direction is
/// isolated in it, and traffic passes when the sender's egress and the receiver's ingress both allow it) over the
/// pods a release runs: the real traffic passes, the rest is blocked.
/// </summary>
public sealed class NetworkPolicyTests
{
    private const string Ns = "llm";

    /// <summary>A pod (namespace, labels, named container ports) or an address outside the cluster's pods.</summary>
    private sealed record Endpoint(string Name, string? Namespace, IReadOnlyDictionary<string, string> Labels, IReadOnlyDictionary<string, string> NamespaceLabels,
        IReadOnlyDictionary<string, int> Ports, IPAddress? Address = null)
    {
        public bool IsPod => Namespace is not null;
    }

    private static Endpoint Pod(string name, string ns, IReadOnlyDictionary<string, string> labels, IReadOnlyDictionary<string, int>? ports = null) =>
        new(name, ns, labels, new Dictionary<string, string> { ["kubernetes.io/metadata.name"] = ns }, ports ?? new Dictionary<string, int>());

    private static Endpoint External(string name, string address) =>
        new(name, null, new Dictionary<string, string>(), new Dictionary<string, string>(), new Dictionary<string, int>(), IPAddress.Parse(address));

    [Theory]
    [InlineData("default")]
    [InlineData("gpu-external-redis-values.yaml")]
    [InlineData("cpu-demo-redis-values.yaml")]
    public void TheRealTrafficPasses_AndTheRestIsBlocked(string scenario)
    {
        var docs = HelmChart.Documents(scenario);
        var policies = docs.Where(d => d["kind"]!.ToString() == "NetworkPolicy").Select(d => KubernetesJson.Deserialize<V1NetworkPolicy>(d.ToJsonString())).ToArray();
        Assert.NotEmpty(policies);

        // The pods of a release: the chart's operator (and Redis), and what the operator makes of the chart's MoeDeployment.
        Endpoint Workload(string name)
        {
            var w = docs.Single(d => d["kind"]!.ToString() is "Deployment" or "StatefulSet" && d["metadata"]!["name"]!.ToString() == name);
            var labels = w["spec"]!["template"]!["metadata"]!["labels"]!.AsObject().ToDictionary(p => p.Key, p => p.Value!.ToString());
            var ports = w["spec"]!["template"]!["spec"]!["containers"]!.AsArray().SelectMany(c => c!["ports"]!.AsArray())
                .ToDictionary(p => p!["name"]!.ToString(), p => (int)p!["containerPort"]!.GetValue<long>());
            return Pod(name, Ns, labels, ports);
        }
        var op = Workload("moemesh-operator");
        var md = KubernetesJson.Deserialize<MoeDeployment>(docs.Single(d => d["kind"]!.ToString() == "MoeDeployment").ToJsonString());
        var children = DesiredState.Children(md, new TierCounts(1, 2), PlacementPlan.Uniform(2, 1), 1);
        Endpoint Serving(V1PodTemplateSpec t, string name) => Pod(name, Ns, t.Metadata.Labels.ToDictionary(),
            t.Spec.Containers.SelectMany(c => c.Ports).ToDictionary(p => p.Name, p => p.ContainerPort));
        var gateway = Serving(children.OfType<V1Deployment>().Single().Spec.Template, "gateway");
        var node = Serving(children.OfType<V1StatefulSet>().Single().Spec.Template, "expert-node");
        var redis = docs.Any(d => d["kind"]!.ToString() == "StatefulSet") ? Workload("moemesh-redis") : null;
        var gatewayClients = docs.Single(d => d["metadata"]!["name"]!.ToString() == "moemesh-gateway" && d["kind"]!.ToString() == "NetworkPolicy")["spec"]!["ingress"]![0]!["from"];
        var client = gatewayClients is null
            ? Pod("client", "apps", new Dictionary<string, string> { ["app"] = "chat" })
            : Pod("client", "ingress", new Dictionary<string, string> { ["app"] = "ingress-nginx" });
        var stranger = Pod("stranger", "apps", new Dictionary<string, string> { ["app"] = "other" });
        var prometheus = Pod("prometheus", "monitoring", new Dictionary<string, string> { ["app.kubernetes.io/name"] = "prometheus" });
        var dns = Pod("kube-dns", "kube-system", new Dictionary<string, string> { ["k8s-app"] = "kube-dns" }, new Dictionary<string, int> { ["dns"] = 53 });
        var apiServer = External("api-server", scenario == "gpu-external-redis-values.yaml" ? "10.96.0.1" : "10.0.0.1");
        var internet = External("internet", "203.0.113.9");

        bool Allowed(Endpoint from, Endpoint to, int port, string protocol = "TCP") => Egress(policies, from, to, port, protocol) && Ingress(policies, from, to, port, protocol);
        void Passes(Endpoint from, Endpoint to, int port, string protocol = "TCP") => Assert.True(Allowed(from, to, port, protocol), $"{from.Name} -> {to.Name}:{port}/{protocol} should pass");
        void Blocked(Endpoint from, Endpoint to, int port, string protocol = "TCP") => Assert.False(Allowed(from, to, port, protocol), $"{from.Name} -> {to.Name}:{port}/{protocol} should be blocked");

        Passes(client, gateway, Names.GatewayPort);
        Passes(gateway, node, Names.ExpertPort);
        Passes(gateway, apiServer, 443);
        Passes(gateway, dns, 53, "UDP");
        Passes(op, apiServer, 443);
        Passes(op, gateway, Names.GatewayPort);
        Passes(op, node, Names.ExpertPort);
        Passes(prometheus, op, 8081);
        Passes(prometheus, node, Names.ExpertPort);
        Passes(prometheus, gateway, Names.GatewayPort);
        Blocked(client, node, Names.ExpertPort);
        Blocked(client, op, 8081);
        Blocked(node, apiServer, 443);
        Blocked(node, internet, 443);
        Blocked(gateway, node, 22);
        Blocked(gateway, internet, 80);
        Blocked(node, gateway, Names.GatewayPort);
        if (gatewayClients is not null) Blocked(stranger, gateway, Names.GatewayPort);
        if (redis is not null)
        {
            Passes(gateway, redis, 6379);
            Blocked(client, redis, 6379);
            Blocked(node, redis, 6379);
            Blocked(op, redis, 6379);
            Blocked(redis, apiServer, 443);
        }
    }

    /// <summary>Whether the sender's egress policies let the traffic out (a pod no egress policy selects sends anything).</summary>
    private static bool Egress(IEnumerable<V1NetworkPolicy> policies, Endpoint from, Endpoint to, int port, string protocol)
    {
        if (!from.IsPod) return true;
        var selecting = policies.Where(p => p.Metadata.NamespaceProperty == from.Namespace && Types(p).Contains("Egress") && Matches(p.Spec.PodSelector, from.Labels)).ToArray();
        return selecting.Length == 0 || selecting.Any(p => (p.Spec.Egress ?? []).Any(rule =>
            (rule.To is null || rule.To.Count == 0 || rule.To.Any(peer => PeerMatches(peer, p.Metadata.NamespaceProperty, to)))
            && PortMatches(rule.Ports, to, port, protocol)));
    }

    /// <summary>Whether the receiver's ingress policies let the traffic in.</summary>
    private static bool Ingress(IEnumerable<V1NetworkPolicy> policies, Endpoint from, Endpoint to, int port, string protocol)
    {
        if (!to.IsPod) return true;
        var selecting = policies.Where(p => p.Metadata.NamespaceProperty == to.Namespace && Types(p).Contains("Ingress") && Matches(p.Spec.PodSelector, to.Labels)).ToArray();
        return selecting.Length == 0 || selecting.Any(p => (p.Spec.Ingress ?? []).Any(rule =>
            (rule.FromProperty is null || rule.FromProperty.Count == 0 || rule.FromProperty.Any(peer => PeerMatches(peer, p.Metadata.NamespaceProperty, from)))
            && PortMatches(rule.Ports, to, port, protocol)));
    }

    private static IList<string> Types(V1NetworkPolicy p) =>
        p.Spec.PolicyTypes ?? (p.Spec.Egress is null ? ["Ingress"] : ["Ingress", "Egress"]);

    private static bool PeerMatches(V1NetworkPolicyPeer peer, string policyNamespace, Endpoint e)
    {
        if (peer.IpBlock is { } block)
            return e.Address is { } a && InCidr(a, block.Cidr) && !(block.Except ?? []).Any(x => InCidr(a, x));
        if (!e.IsPod) return false;
        var inNamespace = peer.NamespaceSelector is null ? e.Namespace == policyNamespace : Matches(peer.NamespaceSelector, e.NamespaceLabels);
        return inNamespace && (peer.PodSelector is null || Matches(peer.PodSelector, e.Labels));
    }

    private static bool PortMatches(IList<V1NetworkPolicyPort>? ports, Endpoint to, int port, string protocol) =>
        ports is null || ports.Count == 0 || ports.Any(p => (p.Protocol ?? "TCP") == protocol && (p.Port is null
            || (int.TryParse(p.Port.Value, out var number) ? number == port || (p.EndPort is { } end && port >= number && port <= end)
                : to.Ports.TryGetValue(p.Port.Value, out var named) && named == port)));

    private static bool Matches(V1LabelSelector selector, IReadOnlyDictionary<string, string> labels) =>
        (selector.MatchLabels ?? new Dictionary<string, string>()).All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value)
        && (selector.MatchExpressions ?? []).All(x => x.OperatorProperty switch
        {
            "In" => labels.TryGetValue(x.Key, out var v) && x.Values.Contains(v),
            "NotIn" => !labels.TryGetValue(x.Key, out var v) || !x.Values.Contains(v),
            "Exists" => labels.ContainsKey(x.Key),
            "DoesNotExist" => !labels.ContainsKey(x.Key),
            _ => throw new ArgumentException(x.OperatorProperty),
        });

    private static bool InCidr(IPAddress address, string cidr)
    {
        var (network, bits) = (IPAddress.Parse(cidr.Split('/')[0]), int.Parse(cidr.Split('/')[1]));
        var a = address.GetAddressBytes();
        var n = network.GetAddressBytes();
        if (a.Length != n.Length) return false;
        for (var i = 0; i < a.Length; i++)
        {
            var take = Math.Clamp(bits - 8 * i, 0, 8);
            var mask = (byte)(0xFF << (8 - take));
            if ((a[i] & mask) != (n[i] & mask)) return false;
        }
        return true;
    }
}
