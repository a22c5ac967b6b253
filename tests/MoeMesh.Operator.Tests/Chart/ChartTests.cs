using System.Diagnostics;
using System.Net;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using k8s;
using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;
using MoeMesh.Testing.Operator;

namespace MoeMesh.Operator.Tests.Chart;

/// <summary>
/// The Helm chart rendered for the default values and each realistic value file of charts/moemesh/ci: every
/// document is a valid Kubernetes object, and the pieces are wired to each other and to the programs.
/// </summary>
public sealed class ChartTests
{
    /// <summary>apiVersion/kind to the KubernetesClient model type: the built-in kinds, and the MoeDeployment.</summary>
    private static readonly Dictionary<string, Type> Types = typeof(V1Pod).Assembly.GetTypes()
        .Select(t => (Type: t, Entity: t.GetCustomAttribute<KubernetesEntityAttribute>()))
        .Where(x => x.Entity is { Kind: not null } && !x.Entity.Kind.EndsWith("List", StringComparison.Ordinal))
        .GroupBy(x => x.Entity!.Group is null or "" ? $"{x.Entity.ApiVersion}/{x.Entity.Kind}" : $"{x.Entity.Group}/{x.Entity.ApiVersion}/{x.Entity.Kind}")
        .ToDictionary(g => g.Key, g => g.First().Type)
        .Append(KeyValuePair.Create($"{MoeDeployment.Group}/{MoeDeployment.Version}/{MoeDeployment.KindName}", typeof(MoeDeployment)))
        .ToDictionary();

    [Theory]
    [MemberData(nameof(HelmChart.Scenarios), MemberType = typeof(HelmChart))]
    public void EveryDocument_ParsesIntoTheKubernetesTypes_RefusingUnknownFields(string scenario)
    {
        var text = HelmChart.Render(scenario);
        var sources = text.Split("\n---\n", StringSplitOptions.RemoveEmptyEntries).Select(d => d.TrimStart('-', '\n')).Where(d => d.Contains("kind:", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(sources);
        foreach (var source in sources)
        {
            var json = Yaml.ToJson(source)!.AsObject();
            var key = $"{json["apiVersion"]}/{json["kind"]}";
            if (key == "monitoring.coreos.com/v1/ServiceMonitor")
            {
                // Not a KubernetesClient type: its fields are checked by the wiring test.
                Assert.Equal(["apiVersion", "kind", "metadata", "spec"], json.Select(p => p.Key));
                continue;
            }
            Assert.True(Types.ContainsKey(key), $"{key} is not a kind the chart should render");
            var parsed = Assert.Single(KubernetesYaml.LoadAllFromString(source, Types, strict: true));
            Assert.IsType(Types[key], parsed);
            var meta = ((IKubernetesObject<V1ObjectMeta>)parsed).Metadata;
            Assert.Equal("moemesh", meta.Labels["app.kubernetes.io/part-of"]);
            if (json["kind"]!.ToString() is not ("ClusterRole" or "ClusterRoleBinding")) Assert.Equal("llm", meta.NamespaceProperty);
        }
    }

    [Fact]
    public void AnUnknownField_FailsTheStrictParse()
    {
        // The check above can fail: a misspelt field in a template is an error, not silently dropped.
        var source = HelmChart.Render("default").Split("\n---\n").First(d => d.Contains("kind: Deployment", StringComparison.Ordinal))
            .Replace("replicas: 1", "replicas: 1\n  replicaz: 2");
        Assert.ThrowsAny<Exception>(() => KubernetesYaml.LoadAllFromString(source, Types, strict: true));
    }

    [Theory]
    [MemberData(nameof(HelmChart.Scenarios), MemberType = typeof(HelmChart))]
    public void Workloads_Services_Accounts_AndSecrets_AreWiredToEachOther(string scenario)
    {
        var docs = HelmChart.Documents(scenario);
        JsonObject[] Of(string kind) => docs.Where(d => d["kind"]!.ToString() == kind).ToArray();
        var workloads = Of("Deployment").Concat(Of("StatefulSet")).ToArray();
        foreach (var w in workloads)
        {
            var podLabels = Labels(w["spec"]!["template"]!["metadata"]!["labels"]);
            Assert.True(Subset(Labels(w["spec"]!["selector"]!["matchLabels"]), podLabels), $"{w["metadata"]!["name"]}: the selector does not match its pods");
            var pod = w["spec"]!["template"]!["spec"]!;
            foreach (var c in pod["containers"]!.AsArray())
                foreach (var env in c!["env"]?.AsArray() ?? [])
                    if (env!["valueFrom"]?["secretKeyRef"] is { } secret)
                        Assert.Contains(Of("Secret"), s => s["metadata"]!["name"]!.ToString() == secret["name"]!.ToString() && s["data"]?[secret["key"]!.ToString()] is not null);
            if (pod["serviceAccountName"]?.ToString() is { } account && scenario != "no-moedeployment-values.yaml")
                Assert.Contains(Of("ServiceAccount"), a => a["metadata"]!["name"]!.ToString() == account);
        }
        foreach (var service in Of("Service"))
        {
            var selector = Labels(service["spec"]!["selector"]);
            var selected = workloads.Where(w => Subset(selector, Labels(w["spec"]!["template"]!["metadata"]!["labels"]))).ToArray();
            var target = Assert.Single(selected);
            var ports = target["spec"]!["template"]!["spec"]!["containers"]!.AsArray().SelectMany(c => c!["ports"]!.AsArray()).ToArray();
            foreach (var port in service["spec"]!["ports"]!.AsArray())
                Assert.Contains(ports, p => port!["targetPort"]!.ToString() == p!["name"]!.ToString() || port["targetPort"]!.ToString() == p["containerPort"]!.ToString());
        }
        foreach (var set in Of("StatefulSet"))
            Assert.Contains(Of("Service"), s => s["metadata"]!["name"]!.ToString() == set["spec"]!["serviceName"]!.ToString());
        foreach (var binding in Of("ClusterRoleBinding"))
        {
            Assert.Contains(Of("ClusterRole"), r => r["metadata"]!["name"]!.ToString() == binding["roleRef"]!["name"]!.ToString());
            var operatorPod = Of("Deployment").Single(d => d["metadata"]!["name"]!.ToString().EndsWith("-operator", StringComparison.Ordinal))["spec"]!["template"]!["spec"]!;
            Assert.Equal(operatorPod["serviceAccountName"]!.ToString(), binding["subjects"]![0]!["name"]!.ToString());
            Assert.Equal("llm", binding["subjects"]![0]!["namespace"]!.ToString());
        }

        // The MoeDeployment: valid for the CRD, and what the operator makes of it is what the ServiceMonitors and the test pod expect.
        foreach (var md in Of("MoeDeployment"))
        {
            var result = CrdSchema.Validate(md);
            Assert.True(result.IsValid, CrdSchema.Errors(result));
            var resource = KubernetesJson.Deserialize<MoeDeployment>(md.ToJsonString());
            var n = Names.Of(resource);
            var children = DesiredState.Children(resource, TierCounts.FromSpec(resource.Spec), PlacementPlan.Uniform(TierCounts.FromSpec(resource.Spec).ExpertNodes, 1), 1);
            var services = children.OfType<V1Service>().ToArray();
            foreach (var monitor in Of("ServiceMonitor").Where(m => !m["metadata"]!["name"]!.ToString().EndsWith("-operator", StringComparison.Ordinal)))
            {
                var match = services.Where(s => Subset(Labels(monitor["spec"]!["selector"]!["matchLabels"]), s.Metadata.Labels.ToDictionary())).ToArray();
                var service = Assert.Single(match);
                Assert.Contains(service.Spec.Ports, p => p.Name == monitor["spec"]!["endpoints"]![0]!["port"]!.ToString());
            }
            var test = Of("Pod").Single(p => p["metadata"]!["annotations"]?["helm.sh/hook"]?.ToString() == "test");
            Assert.Contains($"http://{n.Gateway}.llm.svc:{Names.GatewayPort}/v1/completions", test["spec"]!["containers"]![0]!["args"]![0]!.ToString());
            Assert.Contains(services, s => s.Metadata.Name == n.Gateway && s.Spec.Ports.Single().Port == Names.GatewayPort);
        }
        foreach (var monitor in Of("ServiceMonitor").Where(m => m["metadata"]!["name"]!.ToString().EndsWith("-operator", StringComparison.Ordinal)))
        {
            var service = Assert.Single(Of("Service"), s => Subset(Labels(monitor["spec"]!["selector"]!["matchLabels"]), Labels(s["metadata"]!["labels"])));
            Assert.Contains(service["spec"]!["ports"]!.AsArray(), p => p!["name"]!.ToString() == monitor["spec"]!["endpoints"]![0]!["port"]!.ToString());
        }
    }

    [Theory]
    [MemberData(nameof(HelmChart.Scenarios), MemberType = typeof(HelmChart))]
    public void Pods_RunNonRoot_ReadOnly_WithoutPrivilegeEscalationOrCapabilities(string scenario)
    {
        foreach (var doc in HelmChart.Documents(scenario))
        {
            var pod = doc["kind"]!.ToString() switch
            {
                "Deployment" or "StatefulSet" => doc["spec"]!["template"]!["spec"],
                "Pod" => doc["spec"],
                _ => null,
            };
            if (pod is null) continue;
            Assert.True(pod["securityContext"]!["runAsNonRoot"]!.GetValue<bool>());
            Assert.Equal("RuntimeDefault", pod["securityContext"]!["seccompProfile"]!["type"]!.ToString());
            foreach (var c in pod["containers"]!.AsArray())
            {
                var sc = c!["securityContext"]!;
                Assert.False(sc["allowPrivilegeEscalation"]!.GetValue<bool>());
                Assert.True(sc["readOnlyRootFilesystem"]!.GetValue<bool>());
                Assert.Equal(["ALL"], sc["capabilities"]!["drop"]!.AsArray().Select(x => x!.ToString()));
                Assert.NotNull(c["resources"]?["requests"]);
            }
        }
    }

    [Fact]
    public void GpuValues_PutGpuLimits_NodeSelectors_AndTolerations_OnBothTiers()
    {
        var md = KubernetesJson.Deserialize<MoeDeployment>(HelmChart.Documents("gpu-external-redis-values.yaml").Single(d => d["kind"]!.ToString() == "MoeDeployment").ToJsonString());
        var children = DesiredState.Children(md, new TierCounts(2, 8), PlacementPlan.Uniform(8, 2), 1);
        foreach (var template in children.OfType<V1Deployment>().Select(d => d.Spec.Template).Concat(children.OfType<V1StatefulSet>().Select(s => s.Spec.Template)))
        {
            Assert.Equal("1", template.Spec.Containers.Single().Resources.Limits["nvidia.com/gpu"].ToString());
            Assert.Equal("NVIDIA-H200", template.Spec.NodeSelector["nvidia.com/gpu.product"]);
            Assert.Contains(template.Spec.Tolerations, t => t.Key == "nvidia.com/gpu");
            Assert.Contains("cuda", template.Spec.Containers.Single().Args);
        }
    }

    [Fact]
    public async Task OperatorProbes_HitEndpointsTheOperatorServes()
    {
        var deployment = HelmChart.Documents("default").Single(d => d["kind"]!.ToString() == "Deployment");
        var container = deployment["spec"]!["template"]!["spec"]!["containers"]![0]!;
        var port = container["ports"]!.AsArray().Single()!;
        Assert.Contains("--urls=http://0.0.0.0:8081", container["args"]!.AsArray().Select(a => a!.ToString()));
        Assert.Equal(8081L, port["containerPort"]!.GetValue<long>());
        // The operator started with the chart's own arguments (its listen address moved to loopback).
        var args = container["args"]!.AsArray().Select(a => a!.ToString()).Where(a => !a.StartsWith("--urls=", StringComparison.Ordinal)).ToArray();
        Assert.Contains(args, a => a.StartsWith("--scaling-interval-ms=", StringComparison.Ordinal));
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a", args);
        foreach (var probe in new[] { "livenessProbe", "readinessProbe" })
        {
            Assert.Equal(port["name"]!.ToString(), container[probe]!["httpGet"]!["port"]!.ToString());
            var path = container[probe]!["httpGet"]!["path"]!.ToString();
            await Eventually.HoldsAsync(async () => (await op.Http.GetAsync(path)).StatusCode, s => s == HttpStatusCode.OK, $"{probe} {path} answers 200");
        }
    }

    [Fact]
    public void ValuesSchema_AcceptsEveryValuesFile_AndRejectsBadValues()
    {
        var schema = JsonSchema.FromText(File.ReadAllText(Path.Combine(HelmChart.Dir, "values.schema.json")));
        EvaluationResults Evaluate(JsonNode values)
        {
            using var doc = JsonDocument.Parse(values.ToJsonString());
            return schema.Evaluate(doc.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        }
        JsonNode Values(string scenario) => JsonNode.Parse(HelmChart.RenderRaw([.. HelmChart.ValueArgs(scenario), "--values-json"]))!;
        foreach (var scenario in HelmChart.ScenarioNames())
        {
            var result = Evaluate(Values(scenario));
            Assert.True(result.IsValid, $"{scenario}: {CrdSchema.Errors(result)}");
        }
        foreach (var (path, bad) in new (string, JsonNode?)[]
                 {
                     ("operator.replicaz", 2), ("operator.replicas", 0), ("operator.image.pullPolicy", "Sometimes"),
                     ("operator.prometheusUrl", "prometheus:9090"), ("moeDeployment.name", "Demo_1"), ("redis.persistence.size", "lots"),
                     ("networkPolicy.apiServer.cidrs", new JsonArray("10.0.0.1")), ("serviceMonitor.interval", 30), ("redis.enabled", "yes"),
                 })
        {
            var values = Values("default");
            var parts = path.Split('.');
            var target = parts[..^1].Aggregate(values, (node, key) => node[key]!);
            target[parts[^1]] = bad?.DeepClone();
            Assert.False(Evaluate(values).IsValid, $"{path} = {bad?.ToJsonString()}");
        }
    }

    [Fact]
    public void Notes_TellTheUserHowToReachAndAskTheModel()
    {
        var notes = HelmChart.Render("default", "--notes");
        Assert.Contains("kubectl -n llm port-forward svc/demo-gateway 8000:8000", notes);
        Assert.Contains("curl http://localhost:8000/v1/completions", notes);
        Assert.Contains("\"model\": \"moemesh-demo\"", notes);
        Assert.Contains("helm test moemesh -n llm", notes);
        Assert.Contains("Bearer $(kubectl -n llm get secret moemesh-api", HelmChart.Render("gpu-external-redis-values.yaml", "--notes"));
        Assert.Contains("No MoeDeployment was created", HelmChart.Render("no-moedeployment-values.yaml", "--notes"));
    }

    [Fact]
    public void ServiceMonitors_WithoutThePrometheusOperator_AreAClearError()
    {
        var e = Assert.Throws<ChartRenderException>(() => HelmChart.RenderRaw("-f", Path.Combine(HelmChart.Dir, "ci", "monitoring-values.yaml")));
        Assert.Contains("serviceMonitor.enabled needs the Prometheus Operator's CRDs", e.Message);
    }

    [Fact]
    public async Task HelmTestPod_AsksARealGateway_AndPasses()
    {
        // The test pod's command, pointed at a real gateway process serving the demo under the chart's model name.
        var pod = HelmChart.Documents("default").Single(d => d["kind"]!.ToString() == "Pod");
        var command = pod["spec"]!["containers"]![0]!["args"]![0]!.ToString();
        var cache = Directory.CreateTempSubdirectory("moemesh-chart-test-").FullName;
        try
        {
            await using var gateway = await GatewayProcess.StartServingAsync(null, "moemesh-demo", "--cache-dir", cache);
            var local = command.Replace("http://demo-gateway.llm.svc:8000", gateway.Address.ToString().TrimEnd('/'), StringComparison.Ordinal);
            Assert.NotEqual(command, local);
            var (code, output) = await ShellAsync(local);
            Assert.True(code == 0, output);
            Assert.Contains("\"choices\"", output);
            // And it fails when the answer is not a completion: a model the gateway does not serve.
            var (wrong, text) = await ShellAsync(local.Replace("moemesh-demo", "another-model", StringComparison.Ordinal));
            Assert.True(wrong != 0, text);
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    private static async Task<(int Code, string Output)> ShellAsync(string command)
    {
        var info = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await output + await error);
    }

    private static Dictionary<string, string> Labels(JsonNode? node) =>
        node?.AsObject().ToDictionary(p => p.Key, p => p.Value!.ToString()) ?? [];

    private static bool Subset(IReadOnlyDictionary<string, string> selector, IReadOnlyDictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
