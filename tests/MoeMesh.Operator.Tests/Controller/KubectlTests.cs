using MoeMesh.Testing.Operator;
using System.Diagnostics;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Tests.Controller;

/// <summary>
/// The real kubectl against the test API server and the real operator, as a user drives a MoeDeployment:
/// server-side apply of the documented sample, the printer columns, kubectl scale through the scale
/// subresource, and describe with conditions and events. A second real client keeps the server honest.
/// </summary>
public sealed class KubectlTests
{
    [Fact]
    public async Task Kubectl_AppliesGetsScalesAndDescribes_TheSample()
    {
        await using var cluster = await Cluster.StartAsync();
        await using var op = await cluster.StartOperatorAsync("op-a");
        var n = new Names("default", "demo");

        var apply = await KubectlAsync(cluster, "apply", "--server-side", "-f", Samples.Path("moedeployment-cpu-demo.yaml"));
        Assert.Contains("moedeployment.moemesh.dev/demo serverside-applied", apply);
        Assert.Contains(cluster.Server.Requests, r => r.Verb == "patch" && r.Type?.Plural == "moedeployments" && r.Query.Contains("fieldManager=kubectl"));
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("deployments", "default", n.Gateway)), d => d is not null, "the gateway Deployment");
        await Eventually.HoldsAsync(() => cluster.GetAsync("default", "demo"), m => m.Status?.Conditions is not null, "a status");

        var get = Lines(await KubectlAsync(cluster, "get", "moedeployments"));
        Assert.Equal(["NAME", "MODEL", "READY", "GATEWAYS", "EXPERTS", "AGE"], get[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["demo", "moemesh-demo", "False", "0"], get[1].Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(4));
        var wide = Lines(await KubectlAsync(cluster, "get", "moed", "-o", "wide"));
        Assert.Contains("REASON", wide[0]);
        var reason = (await cluster.GetAsync("default", "demo")).Status!.Conditions!.First(c => c.Type == "Ready").Reason;
        Assert.Contains(reason, wide[1]);
        Assert.NotEqual("Serving", reason);
        Assert.Contains(n.GatewayUrl, wide[1]);

        cluster.SetReady("deployments", "default", n.Gateway, 1);
        cluster.SetReady("statefulsets", "default", n.Experts, 2);
        cluster.SetExpertEndpoints("default", "demo", (0, true), (1, true));
        await Eventually.HoldsAsync(() => cluster.GetAsync("default", "demo"), m => m.Status?.Gateway?.Ready == 1 && m.Status.Experts?.Ready == 2, "the gateway and the expert nodes ready");
        Assert.Contains("True", Lines(await KubectlAsync(cluster, "get", "moedeployment", "demo"))[1]);

        var scale = await KubectlAsync(cluster, "scale", "moedeployment/demo", "--replicas=3");
        Assert.Contains("moedeployment.moemesh.dev/demo scaled", scale);
        Assert.Contains(cluster.Server.Requests, r => r.Subresource == "scale" && r.Verb == "patch");
        Assert.Equal(3, (await cluster.GetAsync("default", "demo")).Spec.Gateway!.Replicas);
        await Eventually.HoldsAsync(() => Task.FromResult(cluster.Get("deployments", "default", n.Gateway)!["spec"]!["replicas"]!.GetValue<int>()), r => r == 3, "three gateways");

        var describe = await KubectlAsync(cluster, "describe", "moedeployment", "demo");
        Assert.Contains("Conditions:", describe);
        Assert.Contains("Reason:                Serving", describe.Replace("\t", " "));
        Assert.Matches(@"Normal\s+Created\s+\S+\s+moemesh-operator\s+created Deployment demo-gateway", describe);
        Assert.Matches(@"Normal\s+Updated\s+\S+\s+moemesh-operator\s+applied spec generation 2 to Deployment demo-gateway", describe);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private static async Task<string> KubectlAsync(Cluster cluster, params string[] args)
    {
        var info = new ProcessStartInfo("kubectl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])["--kubeconfig", cluster.Kubeconfig, "--cache-dir", Path.Combine(cluster.TempDir, "kubectl-cache"), .. args]) info.ArgumentList.Add(a);
        // A private HOME: kubectl (and the packaged dispatcher) keep their own state there.
        info.Environment["HOME"] = cluster.TempDir;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(p.ExitCode == 0, $"kubectl {string.Join(' ', args)} exited {p.ExitCode}: {await stderr}{await stdout}");
        return await stdout;
    }
}
