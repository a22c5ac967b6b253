using MoeMesh.Testing.Operator;
using k8s;
using System.Net;
using System.Text.Json.Nodes;
using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Tests.Controller;

/// <summary>
/// The real operator process against the test API server: it creates the children, restores them, follows
/// spec changes and scaling, retries conflicts and failures, leaves nothing behind, and acts only as leader.
/// </summary>
public sealed class OperatorTests
{
    private const string Ns = "llm";

    private static MoeDeployment Sample(string name, int nodes, int replicasPerExpert = 1)
    {
        var md = Samples.Load("moedeployment-gpu.yaml", Ns);
        md.Metadata.Name = name;
        md.Spec.Gateway = new GatewayTierSpec { Replicas = 1 };
        md.Spec.Experts!.Nodes = nodes;
        md.Spec.Experts.MinReplicasPerExpert = replicasPerExpert;
        return md;
    }

    [Fact]
    public async Task Create_AppliesEveryChild_ThenReportsReadinessAndCoverage()
    {
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        // Ready as soon as it has listed the (no) MoeDeployments there are.
        await Eventually.HoldsAsync(async () => (await op.Http.GetAsync("/readyz")).StatusCode == HttpStatusCode.OK, "ready with nothing to reconcile");
        var md = await cluster.CreateAsync(Sample("m1", 2));
        var n = new Names(Ns, "m1");
        string[] all =
        [
            $"ConfigMap/{n.Placement}", $"Deployment/{n.Gateway}", $"PodDisruptionBudget/{n.Experts}", $"PodDisruptionBudget/{n.Gateway}", $"Role/{n.DiscoveryRole}",
            $"RoleBinding/{n.DiscoveryRole}", $"Service/{n.Experts}", $"Service/{n.Gateway}", $"ServiceAccount/{n.GatewayAccount}", $"StatefulSet/{n.Experts}",
        ];
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Children(Ns, "m1")), c => c.SequenceEqual(all.Order()), "all children");
        var deployment = cluster.Get("deployments", Ns, n.Gateway)!;
        Assert.Equal(md.Metadata.Uid, deployment["metadata"]!["ownerReferences"]![0]!["uid"]!.ToString());
        // Server-side apply, as the operator's field manager, forced.
        Assert.Contains(cluster.Server.Requests, r => r.Verb == "patch" && r.Type?.Plural == "deployments"
            && r.ContentType!.StartsWith("application/apply-patch", StringComparison.Ordinal) && r.Query.Contains("fieldManager=moemesh-operator") && r.Query.Contains("force=true"));

        var waiting = await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m1"), m => Reason(m, "Ready") == "ExpertsUncovered", "status before any pod is ready");
        Assert.Contains("shards 0/2, 1/2", StatusBuilder(waiting, "Ready").Message);
        Assert.Equal(("False", "AsExpected"), (StatusBuilder(waiting, "Degraded").Status, StatusBuilder(waiting, "Degraded").Reason));
        Assert.Equal(1, waiting.Status!.ObservedGeneration);
        Assert.Equal(1, waiting.Status.PlacementGeneration);
        Assert.Equal("http://m1-gateway.llm.svc:8000", waiting.Status.Url);

        cluster.SetReady("deployments", Ns, n.Gateway, 1);
        cluster.SetReady("statefulsets", Ns, n.Experts, 2);
        cluster.SetExpertEndpoints(Ns, "m1", (0, true), (1, true));
        var serving = await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m1"), m => Reason(m, "Ready") == "Serving", "Ready once pods are ready");
        Assert.Equal((1, 1, 2, 2), (serving.Status!.Gateway!.Desired, serving.Status.Gateway.Ready, serving.Status.Experts!.Desired, serving.Status.Experts.Ready));

        cluster.SetReady("statefulsets", Ns, n.Experts, 1);
        cluster.SetExpertEndpoints(Ns, "m1", (0, true), (1, false));
        var uncovered = await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m1"), m => Reason(m, "Ready") == "ExpertsUncovered", "uncovered experts reported");
        Assert.Contains("shard 1/2", StatusBuilder(uncovered, "Ready").Message);
        Assert.Contains(n.ExpertPod(1), StatusBuilder(uncovered, "Ready").Message);
        Assert.Equal("True", StatusBuilder(uncovered, "Degraded").Status);
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.HasEvent(Ns, "m1", "ExpertsUncovered")), "a warning event for uncovered experts");
        Assert.True(cluster.HasEvent(Ns, "m1", "Created", $"Deployment {n.Gateway}"));

        Assert.Equal(HttpStatusCode.OK, (await op.Http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await op.Http.GetAsync("/readyz")).StatusCode);
        Assert.True(await op.MetricAsync("moemesh_operator_reconciles_total{result=\"ok\"}") >= 1);
        Assert.Equal(1, await op.MetricAsync("moemesh_operator_leader"));
        Assert.NotNull(await op.MetricAsync("moemesh_operator_queue_depth"));
        Assert.True(await op.MetricAsync("moemesh_operator_reconcile_duration_seconds_count") >= 1);
    }

    [Fact]
    public async Task ChildDeletedOrEditedByHand_IsRestored()
    {
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        await cluster.CreateAsync(Sample("m2", 2));
        var n = new Names(Ns, "m2");
        var first = await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("deployments", Ns, n.Gateway)), d => d is not null, "the gateway Deployment");
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("statefulsets", Ns, n.Experts)), d => d is not null, "the expert StatefulSet");

        await cluster.Client.AppsV1.DeleteNamespacedDeploymentAsync(n.Gateway, Ns);
        var again = await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("deployments", Ns, n.Gateway)), d => d is not null, "the Deployment recreated");
        Assert.NotEqual(first!["metadata"]!["uid"]!.ToString(), again!["metadata"]!["uid"]!.ToString());

        await cluster.Client.AppsV1.PatchNamespacedStatefulSetAsync(new V1Patch("""{"spec":{"replicas":7}}""", V1Patch.PatchType.MergePatch), n.Experts, Ns);
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("statefulsets", Ns, n.Experts)!["spec"]!["replicas"]!.GetValue<int>()), r => r == 2, "replicas restored");
        await cluster.Client.CoreV1.PatchNamespacedConfigMapAsync(new V1Patch(new JsonObject { ["data"] = new JsonObject { [$"{n.ExpertPod(0)}.json"] = "{}" } }.ToJsonString(), V1Patch.PatchType.MergePatch), n.Placement, Ns);
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("configmaps", Ns, n.Placement)!["data"]![$"{n.ExpertPod(0)}.json"]!.ToString()), d => d.Contains("shard:0/2"), "placement restored");
        Assert.True(cluster.HasEvent(Ns, "m2", "Restored", $"StatefulSet {n.Experts}"));
    }

    [Fact]
    public async Task SpecChangesAndScale_AreFollowed_AndUnwantedChildrenDeleted()
    {
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        await cluster.CreateAsync(Sample("m3", 2));
        var n = new Names(Ns, "m3");
        await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m3"), m => m.Status?.PlacementGeneration == 1, "first placement");

        await cluster.PatchSpecAsync(Ns, "m3", """{"spec":{"experts":{"nodes":3}}}""");
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("statefulsets", Ns, n.Experts)!["spec"]!["replicas"]!.GetValue<int>()), r => r == 3, "three expert nodes");
        var placed = await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m3"), m => m.Status?.ObservedGeneration == 2, "status of generation 2");
        Assert.Equal(2, placed.Status!.PlacementGeneration);
        var data = cluster.Get("configmaps", Ns, n.Placement)!["data"]!.AsObject();
        Assert.Equal(3, data.Count);
        // Make before break: the serving nodes keep their shards, the new node starts holding nothing (no gateway
        // reports load here, so no filling round moves experts onto it).
        Assert.Contains("shard:0/2", data[$"{n.ExpertPod(0)}.json"]!.ToString());
        Assert.Contains("shard:1/2", data[$"{n.ExpertPod(1)}.json"]!.ToString());
        Assert.Contains("\"*\":[]", data[$"{n.ExpertPod(2)}.json"]!.ToString());
        Assert.True(cluster.HasEvent(Ns, "m3", "PlacementChanged", "placement generation 2"));

        // kubectl scale, an HPA or KEDA: the scale subresource of the gateway tier.
        await cluster.Client.CustomObjects.PatchNamespacedCustomObjectScaleAsync(new V1Patch("""{"spec":{"replicas":3}}""", V1Patch.PatchType.MergePatch),
            MoeDeployment.Group, MoeDeployment.Version, Ns, MoeDeployment.Plural, "m3");
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("deployments", Ns, n.Gateway)!["spec"]!["replicas"]!.GetValue<int>()), r => r == 3, "three gateways");

        await cluster.PatchSpecAsync(Ns, "m3", """{"spec":{"experts":{"nodes":0}}}""");
        string[] left = [$"Deployment/{n.Gateway}", $"PodDisruptionBudget/{n.Gateway}", $"Service/{n.Gateway}", $"ServiceAccount/{n.GatewayAccount}"];
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Children(Ns, "m3")), c => c.SequenceEqual(left.Order()), "the expert tier removed");
        var args = cluster.Get("deployments", Ns, n.Gateway)!["spec"]!["template"]!["spec"]!["containers"]![0]!["args"]!.AsArray().Select(a => a!.ToString());
        Assert.DoesNotContain("--expert-discovery", args);
        Assert.True(cluster.HasEvent(Ns, "m3", "Deleted", $"StatefulSet {n.Experts}"));
    }

    [Fact]
    public async Task ConflictingStatusWrite_AndAFailedApply_AreRetried()
    {
        await using var cluster = await Cluster.StartAsync();
        // Another writer changes the resource between the operator's read and its first status write: a real 409.
        var conflicted = false;
        cluster.Server.Before(r => r.Verb == "update" && r.Subresource == "status" && r.Name == "m4", r =>
        {
            cluster.Server.Store.Patch(cluster.Server.Type("moedeployments"), Ns, "m4",
                o => o["metadata"]!["annotations"] = new JsonObject { ["example.com/touched"] = "yes" }, status: false);
            conflicted = true;
            return null;
        });
        cluster.Server.Before(r => r.Verb == "patch" && r.Type?.Plural == "statefulsets", _ => (500, "etcd is having a bad day"));
        await using var op = await cluster.StartOperatorAsync("op-a");
        await cluster.CreateAsync(Sample("m4", 2));
        var done = await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m4"), m => m.Status?.PlacementGeneration == 1 && Reason(m, "Degraded") == "AsExpected", "status after retries");
        Assert.True(conflicted);
        Assert.Equal("yes", done.Metadata.Annotations["example.com/touched"]);
        Assert.NotNull(cluster.Get("statefulsets", Ns, new Names(Ns, "m4").Experts));
        Assert.True(await op.MetricAsync("moemesh_operator_conflicts_total") >= 1);
        Assert.True(await op.MetricAsync("moemesh_operator_reconciles_total{result=\"error\"}") >= 1);
        Assert.True(cluster.HasEvent(Ns, "m4", "ApplyFailed"), string.Join("\n", cluster.Events(Ns, "m4").Select(e => $"{e["reason"]}: {e["message"]}")));
    }

    [Fact]
    public async Task SpecChangedDuringAConflictedStatusWrite_IsNeverReportedAsObservedBeforeItIsApplied()
    {
        await using var cluster = await Cluster.StartAsync();
        // The concurrent writer changes the spec between the operator's read and its status write.
        cluster.Server.Before(r => r.Verb == "update" && r.Subresource == "status" && r.Name == "m7", _ =>
        {
            cluster.Server.Store.Patch(cluster.Server.Type("moedeployments"), Ns, "m7", o => o["spec"]!["experts"]!["nodes"] = 3, status: false);
            return null;
        });
        await using var op = await cluster.StartOperatorAsync("op-a");
        await cluster.CreateAsync(Sample("m7", 2));
        var done = await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m7"), m => m.Status?.ObservedGeneration == 2, "generation 2 observed");
        Assert.Equal(3, done.Status!.Experts!.Desired);
        Assert.Equal(3, cluster.Get("statefulsets", Ns, new Names(Ns, "m7").Experts)!["spec"]!["replicas"]!.GetValue<int>());
        // No status ever claimed generation 2 with generation 1's expert count.
        Assert.DoesNotContain(cluster.Server.Store.History(cluster.Server.Type("moedeployments")),
            o => o["status"]?["observedGeneration"]?.GetValue<long>() == 2 && o["status"]?["experts"]?["desired"]?.GetValue<int>() == 2);
    }

    [Fact]
    public async Task DeletedResource_LeavesNothingBehind()
    {
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        await cluster.CreateAsync(Sample("m5", 2));
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Children(Ns, "m5").Count), c => c == 10, "all children");
        await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m5"), m => m.Status is not null, "a status");
        var before = await op.MetricAsync("moemesh_operator_reconciles_total{result=\"ok\"}") ?? 0;

        await cluster.Client.CustomObjects.DeleteNamespacedCustomObjectAsync(MoeDeployment.Group, MoeDeployment.Version, Ns, MoeDeployment.Plural, "m5");
        // The operator sees the deletion (and its children's) and reconciles to nothing; nothing comes back.
        await Programs.WaitForMetricAsync(op.Http, "moemesh_operator_reconciles_total{result=\"ok\"}", v => v > before, "a reconcile after the deletion");
        await Programs.WaitForMetricAsync(op.Http, "moemesh_operator_queue_depth", v => v == 0, "an empty queue");
        Assert.Empty(cluster.Children(Ns, "m5"));
    }

    /// <summary>
    /// A new operator that cannot read the expert StatefulSet's live size (a transient API error) does not guess the
    /// spec's smaller count: it retries, keeps the nodes that have not been drained, and waits for a drain.
    /// </summary>
    [Fact]
    public async Task ANewOperator_WithAFailedReadOfTheLiveCount_ShrinksNothingUndrained()
    {
        await using var cluster = await Cluster.StartAsync();
        var n = new Names(Ns, "m7");
        var first = await cluster.StartOperatorAsync("op-a");
        try
        {
            await cluster.CreateAsync(Sample("m7", 3));
            await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("statefulsets", Ns, n.Experts)?["spec"]?["replicas"]?.GetValue<int>()), r => r == 3, "three expert nodes");
        }
        finally
        {
            await first.DisposeAsync();
        }
        // While no operator runs: the spec asks for two nodes, and a gateway exists (not ready), so a drain must wait.
        await cluster.PatchSpecAsync(Ns, "m7", """{"spec":{"experts":{"nodes":2}}}""");
        cluster.SetEndpoints(Ns, n.Gateway, [new Cluster.Endpoint("10.0.1.1", Ready: false)], Names.GatewayPort);
        var failed = false;
        cluster.Server.Before(r => r.Verb == "get" && r.Type?.Plural == "statefulsets", _ =>
        {
            failed = true;
            return (500, "etcdserver: request timed out");
        });
        await using var second = await cluster.StartOperatorAsync("op-b");
        await Eventually.HoldsAsync(() => Task.FromResult((Waiting: cluster.HasEvent(Ns, "m7", "PlacementWaiting"), Operator: second.Tail())), r => r.Waiting, "the drain waiting for the gateways");
        Assert.True(failed, "the live count's read failed once");
        Assert.Equal(3, cluster.Get("statefulsets", Ns, n.Experts)!["spec"]!["replicas"]!.GetValue<int>());
    }

    [Fact]
    public async Task TwoOperators_OnlyTheLeaderActs_AndTheOtherTakesOver()
    {
        await using var cluster = await Cluster.StartAsync();
        var a = await cluster.StartOperatorAsync("op-a", "--lease-seconds", "8");
        await using var b = await cluster.StartOperatorAsync("op-b", "--lease-seconds", "8");
        try
        {
            var leaders = await Eventually.HoldsAsync(async () => (await a.MetricAsync("moemesh_operator_leader"), await b.MetricAsync("moemesh_operator_leader")),
                l => l.Item1 + l.Item2 == 1, "exactly one leader");
            var (leader, standby) = leaders.Item1 == 1 ? (a, b) : (b, a);
            await Eventually.HoldsAsync(async () => (await standby.Http.GetAsync("/readyz")).StatusCode == HttpStatusCode.OK, "the stand-by ready");

            await cluster.CreateAsync(Sample("m6", 1));
            await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m6"), m => m.Status is not null, "a status");
            var reporters = cluster.Events(Ns, "m6").Select(e => e["reportingInstance"]!.ToString()).Distinct();
            Assert.Equal([leader.Identity], reporters);
            Assert.Equal(0, await standby.MetricAsync("moemesh_operator_reconciles_total{result=\"ok\"}") ?? 0);

            leader.Kill();
            await Programs.WaitForMetricAsync(standby.Http, "moemesh_operator_leader", v => v == 1, "the stand-by takes the lease");
            await cluster.PatchSpecAsync(Ns, "m6", """{"spec":{"experts":{"nodes":2}}}""");
            await Eventually.HoldsAsync(() => cluster.GetAsync(Ns, "m6"), m => m.Status?.ObservedGeneration == 2, "the new leader reconciles");
            Assert.Contains(cluster.Events(Ns, "m6"), e => e["reportingInstance"]!.ToString() == standby.Identity);
        }
        finally
        {
            await a.DisposeAsync();
        }
    }

    private static string? Reason(MoeDeployment m, string type) => m.Status?.Conditions?.FirstOrDefault(c => c.Type == type)?.Reason;

    private static V1Condition StatusBuilder(MoeDeployment m, string type) => m.Status!.Conditions!.First(c => c.Type == type);
}
