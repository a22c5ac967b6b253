using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Kube;
using MoeMesh.Operator.Resources;
using MoeMesh.Testing.KubeApi;
using MoeMesh.Testing.Operator;

namespace MoeMesh.Operator.Tests.Chart;

/// <summary>
/// Least privilege derived from the code, not written by hand: the real operator and a real gateway's discovery run
/// against the test API server under tokens of their own, every call they make is recorded, and the chart's
/// ClusterRole (for the operator) and the Role the operator creates (for the gateways) must allow each call and
/// nothing that no call needs.
/// </summary>
public sealed class RbacTests
{
    /// <summary>A permission: API group, resource (with its subresource) and verb.</summary>
    private sealed record Permission(string Group, string Resource, string Verb)
    {
        public override string ToString() => $"{(Group == "" ? "core" : Group)}/{Resource}:{Verb}";
    }

    [Fact]
    public async Task TheChartsClusterRole_AllowsExactlyTheOperatorsCalls()
    {
        await using var cluster = await Cluster.StartAsync();
        var kubeconfig = cluster.Server.WriteKubeconfig(Path.Combine(cluster.TempDir, "operator.kubeconfig"), "operator");
        // Leases of 12 s: a renewal (an update of the Lease) every 4 s happens within the test, and a loaded machine
        // does not make the leader miss its renewals and step down.
        await using var op = await OperatorProcess.StartAsync(kubeconfig, "op-a", "--lease-seconds", "12", "--scaling-interval-ms", "200");

        // Every path: both tiers autoscaled, a KV store and an API key; status written; a placement round's reads.
        var md = new MoeDeployment
        {
            Metadata = new() { Name = "r", NamespaceProperty = "default" },
            Spec = new MoeDeploymentSpec
            {
                Model = new ModelSource { Demo = true },
                Gateway = new GatewayTierSpec { MinReplicas = 1, MaxReplicas = 2 },
                Experts = new ExpertTierSpec { MinNodes = 2, MaxNodes = 3 },
                KvStore = new KvStoreSpec { Redis = new RedisStoreSpec { Url = "redis://redis:6379", PasswordSecret = new SecretKeyRef { Name = "redis", Key = "password" } } },
                ApiKeySecret = new SecretKeyRef { Name = "api", Key = "key" },
                Scaling = new ScalingSpec { Placement = new PlacementSpec { IntervalSeconds = 1 } },
            },
        };
        // One refused apply of the gateway Deployment: the operator then reads it for its readiness.
        cluster.Server.Before(r => r.User == "operator" && r.Verb == "patch" && r.Type?.Plural == "deployments", _ => (500, "injected failure"));
        await cluster.CreateAsync(md);
        var n = new Names("default", "r");
        await Eventually.HoldsAsync(() => Task.FromResult((Set: cluster.Get("statefulsets", "default", n.Experts), Operator: op.Tail(), Exited: op.Exited)), s => s.Set is not null, "the expert tier");
        cluster.SetExpertEndpoints("default", "r", (0, true), (1, true));
        await Eventually.HoldsAsync(() => cluster.GetAsync("default", "r"), m => m.Status?.PlacementGeneration >= 1 && m.Status.Conditions is not null, "a status");

        // A managed child of every kind that the spec does not want: the operator deletes each.
        var owner = cluster.Get("moedeployments", "default", "r")!;
        foreach (var kind in ChildKind.All)
            Stray(cluster, kind, n, owner);
        await Eventually.HoldsAsync(() => Task.FromResult(ChildKind.All.Count(k => cluster.Get(Plural(k), "default", "stray-" + k.Kind.ToLowerInvariant()) is not null)),
            left => left == 0, "every stray child deleted");
        // The expert tier removed: the operator deletes its children too; and the Lease renewed meanwhile.
        await cluster.PatchSpecAsync("default", "r", """{"spec": {"experts": null}}""");
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("statefulsets", "default", n.Experts)), s => s is null, "the expert tier removed");
        await Eventually.HoldsAsync(() => Task.FromResult(Calls(cluster, "operator")), c => c.Contains(new Permission("coordination.k8s.io", "leases", "update")), "a Lease renewal");

        var calls = Calls(cluster, "operator");
        // What the operator grants the gateways it must hold itself (RBAC refuses escalation), and owner references
        // with blockOwnerDeletion need the owner's finalizers (OwnerReferencesPermissionEnforcement).
        var children = DesiredState.Children(KubernetesJsonMd(owner), new TierCounts(1, 2), PlacementPlan.Uniform(2, 1), 1);
        var granted = children.OfType<V1Role>().SelectMany(r => Expand(r.Rules)).ToHashSet();
        Assert.NotEmpty(granted);
        var finalizers = children.Any(c => c.Metadata.OwnerReferences?.Any(o => o.BlockOwnerDeletion == true) == true)
            ? new[] { new Permission(MoeDeployment.Group, "moedeployments/finalizers", "update") } : [];
        var needed = calls.Concat(granted).Concat(finalizers).ToHashSet();

        var role = HelmChart.Documents("default").Single(d => d["kind"]!.ToString() == "ClusterRole");
        var allowed = Expand(role["rules"]!.AsArray().Select(ToRule)).ToHashSet();
        Assert.True(calls.All(allowed.Contains), "calls the chart does not allow: " + string.Join(", ", calls.Where(c => !allowed.Contains(c))));
        Assert.True(allowed.All(needed.Contains), "allowed but never needed: " + string.Join(", ", allowed.Where(a => !needed.Contains(a)).Select(a => a.ToString()).Order()));
        // The operator works in the MoeDeployments' namespaces (and its Lease's): no cluster-scoped calls but the watches.
        Assert.DoesNotContain(cluster.Server.Requests, r => r.User == "operator" && r.Type is { Plural: "namespaces" or "nodes" or "secrets" });
    }

    [Fact]
    public async Task TheRoleTheOperatorCreates_AllowsExactlyTheGatewaysDiscoveryCalls()
    {
        await using var cluster = await Cluster.StartAsync();
        var n = new Names("default", "d");
        cluster.SetExpertEndpoints("default", "d", (0, true));
        var kubeconfig = cluster.Server.WriteKubeconfig(Path.Combine(cluster.TempDir, "gateway.kubeconfig"), "gateway");
        var cache = Directory.CreateTempSubdirectory("moemesh-rbac-").FullName;
        // A gateway discovering its expert nodes: it never becomes ready here (no node answers), but it lists and watches.
        var info = new ProcessStartInfo("dotnet");
        foreach (var a in new[] { Programs.Dll("gateway", "moemesh-gateway"), "--cache-dir", cache, "--urls", "http://127.0.0.1:0",
                     "--expert-discovery", $"k8s://default/{n.Experts}", "--kubeconfig", kubeconfig })
            info.ArgumentList.Add(a);
        var (process, _) = await Programs.StartListeningAsync(info, "gateway");
        try
        {
            await Eventually.HoldsAsync(() => Task.FromResult(Calls(cluster, "gateway")), c => c.Any(p => p.Verb == "watch"), "the gateway watching its expert Service");
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            process.Dispose();
            Directory.Delete(cache, recursive: true);
        }
        var calls = Calls(cluster, "gateway");
        var md = Samples.Load("moedeployment-gpu.yaml", "default");
        var role = DesiredState.Children(md, new TierCounts(1, 2), PlacementPlan.Uniform(2, 1), 1).OfType<V1Role>().Single();
        var allowed = Expand(role.Rules).ToHashSet();
        Assert.True(calls.All(allowed.Contains), "discovery calls the Role does not allow: " + string.Join(", ", calls.Where(c => !allowed.Contains(c))));
        // get is granted beyond list and watch: a client may read one slice by name; nothing else.
        Assert.True(allowed.All(a => calls.Contains(a) || a.Verb == "get"), "granted but never used: " + string.Join(", ", allowed.Where(a => !calls.Contains(a))));
        Assert.All(cluster.Server.Requests.Where(r => r.User == "gateway" && r.Type is not null), r => Assert.Equal("default", r.Namespace));
    }

    private static HashSet<Permission> Calls(Cluster cluster, string user) =>
        cluster.Server.Requests.Where(r => r.User == user && r.Type is not null)
            .Select(r => new Permission(r.Type!.Group, r.Subresource is null ? r.Type.Plural : $"{r.Type.Plural}/{r.Subresource}", r.Verb))
            .ToHashSet();

    private static IEnumerable<Permission> Expand(IEnumerable<V1PolicyRule> rules) =>
        rules.SelectMany(r => r.ApiGroups.SelectMany(g => r.Resources.SelectMany(res => r.Verbs.Select(v => new Permission(g, res, v)))));

    private static V1PolicyRule ToRule(JsonNode? rule) => new()
    {
        ApiGroups = rule!["apiGroups"]!.AsArray().Select(x => x!.ToString()).ToList(),
        Resources = rule["resources"]!.AsArray().Select(x => x!.ToString()).ToList(),
        Verbs = rule["verbs"]!.AsArray().Select(x => x!.ToString()).ToList(),
    };

    private static MoeDeployment KubernetesJsonMd(JsonObject o) => k8s.KubernetesJson.Deserialize<MoeDeployment>(o.ToJsonString());

    private static string Plural(ChildKind kind) => kind.Kind switch
    {
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ConfigMap" => "configmaps",
        "Service" => "services",
        "StatefulSet" => "statefulsets",
        "Deployment" => "deployments",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        _ => throw new ArgumentException(kind.Kind),
    };

    /// <summary>An object of the kind labelled and owned as the operator's children are, that no spec asks for.</summary>
    private static void Stray(Cluster cluster, ChildKind kind, Names n, JsonObject owner)
    {
        var type = cluster.Server.Type(Plural(kind));
        var labels = new JsonObject();
        foreach (var (k, v) in n.Labels()) labels[k] = v;
        cluster.Server.Store.Create(type, "default", new JsonObject
        {
            ["apiVersion"] = type.GroupVersion,
            ["kind"] = kind.Kind,
            ["metadata"] = new JsonObject
            {
                ["name"] = "stray-" + kind.Kind.ToLowerInvariant(),
                ["namespace"] = "default",
                ["labels"] = labels,
                ["ownerReferences"] = new JsonArray(new JsonObject
                {
                    ["apiVersion"] = $"{MoeDeployment.Group}/{MoeDeployment.Version}", ["kind"] = MoeDeployment.KindName,
                    ["name"] = "r", ["uid"] = owner["metadata"]!["uid"]!.ToString(), ["controller"] = true,
                }),
            },
        });
    }
}
