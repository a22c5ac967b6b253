using k8s;
using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Tests.Desired;

/// <summary>The children a MoeDeployment asks for, checked field by field without any API server.</summary>
public sealed class DesiredStateTests
{
    private static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Children(MoeDeployment md, TierCounts? counts = null)
    {
        var c = counts ?? TierCounts.FromSpec(md.Spec);
        return DesiredState.Children(md, c, PlacementPlan.Uniform(c.ExpertNodes, md.Spec.Experts?.MinReplicasPerExpert ?? 1), 4);
    }

    [Fact]
    public void CpuDemo_GeneratesTheBuiltInModel_InEveryPod()
    {
        var md = Samples.Load("moedeployment-cpu-demo.yaml");
        var children = Children(md);
        var gateway = children.OfType<V1Deployment>().Single();
        Assert.Equal(1, gateway.Spec.Replicas);
        var container = gateway.Spec.Template.Spec.Containers.Single();
        // No checkpoint: the programs generate the demo model into a writable emptyDir (the root filesystem is read-only).
        Assert.Equal(["--cache-dir", "/model", "--served-model-name", "moemesh-demo"], container.Args.Take(4));
        Assert.DoesNotContain("--model", container.Args);
        Assert.NotNull(gateway.Spec.Template.Spec.Volumes.Single(v => v.Name == "model").EmptyDir);
        Assert.False(container.VolumeMounts.Single(m => m.Name == "model").ReadOnlyProperty);
        var node = children.OfType<V1StatefulSet>().Single().Spec.Template.Spec.Containers.Single();
        Assert.Equal(["--cache-dir", "/model"], node.Args.Take(2));
        Assert.Equal(2, children.OfType<V1StatefulSet>().Single().Spec.Replicas);
    }

    [Fact]
    public void ACheckpointOnAHostPath_IsMountedReadOnly_AndServedFromItsFolder()
    {
        var md = Samples.Load("moedeployment-cpu-demo.yaml");
        md.Spec.Model = new ModelSource { Path = "/models/demo", HostPath = new HostPathSource { Path = "/var/lib/moemesh" } };
        md.Spec.Experts = null;
        var children = Children(md);
        Assert.Equal(["ServiceAccount", "Service", "Deployment", "PodDisruptionBudget"], children.Select(c => c.Kind));
        var gateway = children.OfType<V1Deployment>().Single();
        var container = gateway.Spec.Template.Spec.Containers.Single();
        Assert.DoesNotContain("--expert-discovery", container.Args);
        Assert.Equal(["--model", "/model/models/demo"], container.Args.Take(2));
        Assert.Equal("/var/lib/moemesh", gateway.Spec.Template.Spec.Volumes.Single(v => v.Name == "model").HostPath.Path);
        Assert.True(container.VolumeMounts.Single(m => m.Name == "model").ReadOnlyProperty);
        Assert.False(children.OfType<V1ServiceAccount>().Single().AutomountServiceAccountToken);
    }

    [Fact]
    public void GpuSample_HasBothTiers_WiredToEachOther()
    {
        var md = Samples.Load("moedeployment-gpu.yaml");
        var children = Children(md);
        var n = Names.Of(md);
        Assert.Equal(["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "Service", "Deployment", "PodDisruptionBudget"],
            children.Select(c => c.Kind));

        var gateway = children.OfType<V1Deployment>().Single();
        var args = gateway.Spec.Template.Spec.Containers.Single().Args;
        Assert.Equal(2, gateway.Spec.Replicas); // minReplicas while nothing else decides
        Assert.Equal($"k8s://llm/{n.Experts}", After(args, "--expert-discovery"));
        Assert.Equal("redis://moemesh-redis.llm.svc:6379", After(args, "--kv-store"));
        Assert.Equal(["--max-running", "128"], args.TakeLast(2));
        var env = gateway.Spec.Template.Spec.Containers.Single().Env;
        Assert.Equal(("moemesh-redis", "password"), Secret(env, "MOEMESH_KV_STORE_PASSWORD"));
        Assert.Equal(("moemesh-api", "key"), Secret(env, "MOEMESH_API_KEY"));
        Assert.Equal(n.GatewayAccount, gateway.Spec.Template.Spec.ServiceAccountName);
        Assert.Equal("1", gateway.Spec.Template.Spec.Containers.Single().Resources.Limits["nvidia.com/gpu"].ToString());

        var experts = children.OfType<V1StatefulSet>().Single();
        Assert.Equal(8, experts.Spec.Replicas);
        Assert.Equal(n.Experts, experts.Spec.ServiceName);
        var node = experts.Spec.Template.Spec.Containers.Single();
        Assert.Equal("/etc/moemesh/placement/$(POD_NAME).json", After(node.Args, "--placement"));
        Assert.Equal("metadata.name", node.Env.Single(e => e.Name == "POD_NAME").ValueFrom.FieldRef.FieldPath);
        Assert.Equal(n.Placement, experts.Spec.Template.Spec.Volumes.Single(v => v.Name == "placement").ConfigMap.Name);
        Assert.Equal("deepseek-v3-weights", experts.Spec.Template.Spec.Volumes.Single(v => v.Name == "model").PersistentVolumeClaim.ClaimName);

        var placement = children.OfType<V1ConfigMap>().Single();
        Assert.Equal(Enumerable.Range(0, 8).Select(i => $"{n.ExpertPod(i)}.json").Order(), placement.Data.Keys.Order());
        Assert.Equal("4", placement.Metadata.Annotations[Names.PlacementGenerationAnnotation]);

        var role = children.OfType<V1Role>().Single();
        var rule = Assert.Single(role.Rules);
        Assert.Equal(["discovery.k8s.io"], rule.ApiGroups);
        Assert.Equal(["endpointslices"], rule.Resources);
        Assert.Equal(["get", "list", "watch"], rule.Verbs);
        var binding = children.OfType<V1RoleBinding>().Single();
        Assert.Equal(role.Metadata.Name, binding.RoleRef.Name);
        Assert.Equal((n.GatewayAccount, "llm"), (binding.Subjects.Single().Name, binding.Subjects.Single().NamespaceProperty));
        // Two holders per expert: one node may be evicted at a time.
        Assert.Equal("1", children.OfType<V1PodDisruptionBudget>().Single(p => p.Metadata.Name == n.Experts).Spec.MaxUnavailable.ToString());
    }

    [Theory]
    [InlineData("moedeployment-cpu-demo.yaml")]
    [InlineData("moedeployment-gpu.yaml")]
    public void EveryChild_IsOwnedLabelledAndSelectsItsOwnPods(string file)
    {
        var md = Samples.Load(file);
        var children = Children(md);
        foreach (var c in children)
        {
            var owner = Assert.Single(c.Metadata.OwnerReferences);
            Assert.Equal((md.Metadata.Uid, md.Metadata.Name, "MoeDeployment", true), (owner.Uid, owner.Name, owner.Kind, owner.Controller == true));
            Assert.Equal(Names.FieldManager, c.Metadata.Labels[Names.ManagedByLabel]);
            Assert.Equal(md.Metadata.Name, c.Metadata.Labels[Names.DeploymentLabel]);
            Assert.Equal(md.Metadata.NamespaceProperty, c.Metadata.NamespaceProperty);
            Assert.True(c.Metadata.Name.Length <= 63, c.Metadata.Name);
        }
        var pods = children.OfType<V1Deployment>().Select(d => (d.Spec.Selector, d.Spec.Template))
            .Concat(children.OfType<V1StatefulSet>().Select(s => (s.Spec.Selector, s.Spec.Template)));
        foreach (var (selector, template) in pods)
        {
            Assert.All(selector.MatchLabels, kv => Assert.Equal(kv.Value, template.Metadata.Labels[kv.Key]));
            var container = template.Spec.Containers.Single();
            var port = container.Ports.Single();
            Assert.Equal("http", port.Name);
            Assert.Equal($"http://0.0.0.0:{port.ContainerPort}", After(container.Args, "--urls"));
            Assert.Equal(["/healthz", "/healthz", "/readyz"], new[] { container.StartupProbe, container.LivenessProbe, container.ReadinessProbe }.Select(p => p.HttpGet.Path));
            Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
            Assert.Contains("ALL", container.SecurityContext.Capabilities.Drop);
        }
        foreach (var service in children.OfType<V1Service>())
        {
            var selected = pods.Where(p => service.Spec.Selector.All(kv => p.Template.Metadata.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value)).ToArray();
            var pod = Assert.Single(selected);
            Assert.Equal(pod.Template.Spec.Containers.Single().Ports.Single().Name, service.Spec.Ports.Single().TargetPort.Value);
        }
        foreach (var pdb in children.OfType<V1PodDisruptionBudget>())
            Assert.Single(pods, p => pdb.Spec.Selector.MatchLabels.All(kv => p.Template.Metadata.Labels[kv.Key] == kv.Value));
    }

    [Fact]
    public void ReplicaCounts_AreInputs_ForTheAutoscaler()
    {
        var md = Samples.Load("moedeployment-gpu.yaml");
        var children = Children(md, new TierCounts(5, 3));
        Assert.Equal(5, children.OfType<V1Deployment>().Single().Spec.Replicas);
        Assert.Equal(3, children.OfType<V1StatefulSet>().Single().Spec.Replicas);
        Assert.Equal(3, children.OfType<V1ConfigMap>().Single().Data.Count);
    }

    [Fact]
    public void Names_FitDnsLabels_AtTheLongestNameAndNodeCount()
    {
        var n = new Names("default", new string('a', Names.MaxNameLength));
        Assert.True(n.ExpertPod(4095).Length <= 63);
        Assert.True(n.DiscoveryRole.Length <= 63);
        Assert.Equal(4095, n.ExpertOrdinal(n.ExpertPod(4095)));
        Assert.Null(n.ExpertOrdinal(n.Gateway + "-0"));
    }

    [Theory]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(3, 5)]
    public void UniformPlacement_GivesEveryShardItsReplicas(int nodes, int replicas)
    {
        var plan = PlacementPlan.Uniform(nodes, replicas);
        var holders = plan.Nodes.SelectMany(n => n["*"].Split(',')).GroupBy(s => s).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(nodes, holders.Count);
        Assert.All(holders.Values, h => Assert.Equal(Math.Min(replicas, nodes), h));
        Assert.All(plan.Nodes, n => Assert.Equal(n["*"].Split(',').Length, n["*"].Split(',').Distinct().Count()));
    }

    [Fact]
    public void UncoveredShards_AreThoseWithoutAReadyHolder()
    {
        Assert.Equal(["1/4", "3/4"], PlacementPlan.Uniform(4, 1).UncoveredShards([0, 2]));
        Assert.Equal(["2/4"], PlacementPlan.Uniform(4, 2).UncoveredShards([0, 3]));
        Assert.Empty(PlacementPlan.Uniform(4, 2).UncoveredShards([0, 2]));
    }

    private static string After(IList<string> args, string option) => args[args.IndexOf(option) + 1];

    private static (string, string) Secret(IList<V1EnvVar> env, string name)
    {
        var s = env.Single(e => e.Name == name).ValueFrom.SecretKeyRef;
        return (s.Name, s.Key);
    }
}
