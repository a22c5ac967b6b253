using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;
using MoeMesh.Testing.KubeApi;

namespace MoeMesh.Testing.Operator;

/// <summary>
/// A test API server with the MoeDeployment CRD, a kubeconfig for it, and a client: what the operator tests
/// run against. It also plays the parts of Kubernetes' own controllers the tests need (pods becoming ready).
/// </summary>
public sealed class Cluster : IAsyncDisposable
{
    private readonly string _dir;

    public TestApiServer Server { get; }
    public IKubernetes Client { get; }
    public string Kubeconfig { get; }

    private Cluster(TestApiServer server, string dir)
    {
        Server = server;
        _dir = dir;
        Kubeconfig = server.WriteKubeconfig(Path.Combine(dir, "kubeconfig"));
        Client = server.Client();
    }

    public static async Task<Cluster> StartAsync()
    {
        var dir = Directory.CreateTempSubdirectory("moemesh-operator-").FullName;
        var crd = KubernetesYaml.Deserialize<V1CustomResourceDefinition>(
            File.ReadAllText(Path.Combine(Programs.RepositoryRoot(), "charts", "moemesh", "crds", "moedeployments.moemesh.dev.yaml")));
        return new Cluster(await TestApiServer.StartAsync(crd), dir);
    }

    public string TempDir => _dir;

    public Task<OperatorProcess> StartOperatorAsync(string identity, params string[] args) => OperatorProcess.StartAsync(Kubeconfig, identity, args);

    public async Task<MoeDeployment> CreateAsync(MoeDeployment md)
    {
        md.Metadata.Uid = null;
        md.Metadata.Generation = null;
        return await Client.CustomObjects.CreateNamespacedCustomObjectAsync<MoeDeployment>(md, MoeDeployment.Group, MoeDeployment.Version, md.Metadata.NamespaceProperty, MoeDeployment.Plural);
    }

    public Task<MoeDeployment> GetAsync(string ns, string name) =>
        Client.CustomObjects.GetNamespacedCustomObjectAsync<MoeDeployment>(MoeDeployment.Group, MoeDeployment.Version, ns, MoeDeployment.Plural, name);

    /// <summary>Merge-patches the MoeDeployment's spec, as `kubectl patch --type merge` does.</summary>
    public Task PatchSpecAsync(string ns, string name, string json) =>
        Client.CustomObjects.PatchNamespacedCustomObjectAsync(new V1Patch(json, V1Patch.PatchType.MergePatch), MoeDeployment.Group, MoeDeployment.Version, ns, MoeDeployment.Plural, name);

    /// <summary>Every object labelled as a child of the named deployment, as "Kind/name".</summary>
    public IReadOnlyList<string> Children(string ns, string name) =>
        ResourceType.BuiltIn.Where(t => t.Plural != "events")
            .SelectMany(t => Server.Store.List(t, ns, Selectors.Labels($"{Names.DeploymentLabel}={name}")).Select(o => $"{t.Kind}/{o["metadata"]!["name"]}"))
            .Order().ToArray();

    public JsonObject? Get(string plural, string ns, string name) => Server.Store.Get(Server.Type(plural), ns, name);

    public IReadOnlyList<JsonObject> Events(string ns, string name) =>
        Server.Store.List(Server.Type("events"), ns, Selectors.Fields($"involvedObject.name={name}"));

    public bool HasEvent(string ns, string name, string reason, string? text = null) =>
        Events(ns, name).Any(e => e["reason"]?.ToString() == reason && (text is null || e["message"]!.ToString().Contains(text, StringComparison.Ordinal)));

    /// <summary>What the Deployment and StatefulSet controllers would report once pods are ready.</summary>
    public void SetReady(string plural, string ns, string name, int ready) =>
        Server.Store.Patch(Server.Type(plural), ns, name, o => o["status"] = new JsonObject { ["replicas"] = ready, ["readyReplicas"] = ready }, status: true);

    /// <summary>The EndpointSlice the EndpointSlice controller keeps for the expert Service: its pods and their readiness.</summary>
    public void SetExpertEndpoints(string ns, string name, params (int Ordinal, bool Ready)[] pods)
    {
        var n = new Names(ns, name);
        SetEndpoints(ns, n.Experts, pods.Select(p => new Endpoint($"10.0.0.{p.Ordinal + 1}", n.ExpertPod(p.Ordinal), p.Ready)).ToArray(), Names.ExpertPort,
            n.Labels(Names.ExpertComponent));
    }

    /// <summary>One endpoint of a Service: the pod's address, its name (targetRef and hostname) when given, its readiness.</summary>
    public sealed record Endpoint(string Address, string? Pod = null, bool Ready = true);

    /// <summary>
    /// The Service's EndpointSlice (SERVICE-slice), created or replaced, as the EndpointSlice controller keeps it:
    /// its endpoints and the port named http.
    /// </summary>
    public void SetEndpoints(string ns, string service, Endpoint[] endpoints, int port, IReadOnlyDictionary<string, string>? labels = null)
    {
        var type = Server.Type("endpointslices");
        var sliceLabels = new JsonObject { ["kubernetes.io/service-name"] = service };
        foreach (var (k, v) in labels ?? new Dictionary<string, string>()) sliceLabels[k] = v;
        var slice = new JsonObject
        {
            ["apiVersion"] = "discovery.k8s.io/v1",
            ["kind"] = "EndpointSlice",
            ["metadata"] = new JsonObject { ["name"] = service + "-slice", ["namespace"] = ns, ["labels"] = sliceLabels },
            ["addressType"] = "IPv4",
            ["endpoints"] = new JsonArray(endpoints.Select(e =>
            {
                var o = new JsonObject { ["addresses"] = new JsonArray(e.Address), ["conditions"] = new JsonObject { ["ready"] = e.Ready } };
                if (e.Pod is not null)
                {
                    o["hostname"] = e.Pod;
                    o["targetRef"] = new JsonObject { ["kind"] = "Pod", ["name"] = e.Pod, ["namespace"] = ns };
                }
                return (JsonNode)o;
            }).ToArray()),
            ["ports"] = new JsonArray(new JsonObject { ["name"] = "http", ["port"] = port, ["protocol"] = "TCP" }),
        };
        if (Server.Store.Get(type, ns, service + "-slice") is null) Server.Store.Create(type, ns, slice);
        else Server.Store.Patch(type, ns, service + "-slice", o => o["endpoints"] = slice["endpoints"]!.DeepClone(), status: false);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
