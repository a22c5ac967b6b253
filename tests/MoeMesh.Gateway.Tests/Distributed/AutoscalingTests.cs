using System.Text.Json.Nodes;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;
using MoeMesh.Testing.Operator;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>
/// The gateway tier autoscaled end to end: the real operator samples a real, loaded gateway process through the
/// gateway Service's EndpointSlice on the test API server, scales the gateway Deployment up under a backlog and
/// back down after the stabilisation window, with each decision in status and as an event. The load is read from
/// the gateway's own /metrics, or from a real Prometheus scraping it (the operator's --prometheus-url).
/// </summary>
public sealed class AutoscalingTests
{
    [Theory]
    [InlineData(GatewayMetric.Requests, 1.0, false)]
    [InlineData(GatewayMetric.TimeToFirstToken, 0.5, true)]
    public async Task Backlog_ScalesTheGatewaysUp_AndIdle_ScalesThemBackDown(GatewayMetric metric, double target, bool prometheus)
    {
        await using var cluster = await Cluster.StartAsync();
        // One sequence at a time: concurrent requests queue, and wait long for their first token: the load signal.
        await using var gateway = await GatewayProcess.StartAsync(GatewayServer.ModelDir, "--max-running", "1");
        var n = new Names("default", "auto");
        const string pod = "auto-gateway-7d9f8-x2x4q";
        await using var scraper = prometheus ? await PrometheusServer.StartAsync(new PrometheusServer.Target(gateway.Address, "default", n.Gateway, pod)) : null;
        await using var op = await cluster.StartOperatorAsync("op-a",
            ["--scaling-interval-ms", "500", .. scraper is null ? Array.Empty<string>() : ["--prometheus-url", scraper.Url.ToString(), "--prometheus-window-seconds", "4"]]);
        var md = new MoeDeployment
        {
            Metadata = new() { Name = "auto", NamespaceProperty = "default" },
            Spec = new MoeDeploymentSpec
            {
                Model = new ModelSource { Path = "/demo", HostPath = new HostPathSource { Path = "/var/lib/moemesh" } },
                Gateway = new GatewayTierSpec { MinReplicas = 1, MaxReplicas = 4 },
                Scaling = new ScalingSpec
                {
                    Gateway = new GatewayScalingSpec { Metric = metric, Target = target },
                    StableWindowSeconds = 6, PanicWindowSeconds = 2, ScaleDownStabilizationSeconds = 6,
                },
            },
        };
        await cluster.CreateAsync(md);
        await Eventually.HoldsAsync(() => Task.FromResult(Replicas(cluster, n)), r => r == 1, "one gateway to start with");
        cluster.SetEndpoints("default", n.Gateway, [new Cluster.Endpoint(gateway.Address.Host, pod)], gateway.Address.Port);
        // Prometheus has scraped the idle gateway twice: a rate over the operator's window exists.
        if (scraper is not null)
            await Eventually.HoldsAsync(() => scraper.QueryAsync("rate(moemesh_time_to_first_token_seconds_count[4s])"), r => r.Contains("\"pod\"", StringComparison.Ordinal), "the gateway scraped");

        // A backlog: eight long requests at once on a gateway that runs one at a time.
        var requests = Enumerable.Range(0, 8).Select(i => gateway.Http.PostAsync("/v1/completions",
            new StringContent($$"""{"prompt": "Once upon a time {{i}}", "max_tokens": 120, "ignore_eos": true}""", System.Text.Encoding.UTF8, "application/json"))).ToArray();
        string Events() => string.Join(" | ", cluster.Events("default", "auto").Select(e => $"{e["reason"]}: {e["message"]}"));
        await Eventually.HoldsAsync(async () => (Replicas: Replicas(cluster, n), Events: Events(), Operator: op.Tail(), Prometheus: scraper is null ? "" : await scraper.QueryAsync("moemesh_requests_running")),
            r => r.Replicas > 1, "more gateways under the backlog");
        var up = await Eventually.HoldsAsync(() => cluster.GetAsync("default", "auto"), m => m.Status?.Decisions?.Any(d => d.Tier == "gateway" && d.To > d.From) == true, "the decision in status");
        var decision = up.Status!.Decisions!.First(d => d.Tier == "gateway" && d.To > d.From);
        Assert.StartsWith("scale up: ", decision.Reason);
        Assert.True(cluster.HasEvent("default", "auto", "ScaledUp"));
        Assert.True(cluster.HasEvent("default", "auto", "Scaled", "applied the autoscaler's counts"));
        foreach (var r in requests) (await r).EnsureSuccessStatusCode();

        // Idle: back to the minimum, after the stabilisation window, one step at a time.
        await Eventually.HoldsAsync(() => Task.FromResult(Replicas(cluster, n)), r => r == 1, "back to one gateway");
        // The operator scales the Deployment before it writes the decision into status: wait for the status too.
        var down = await Eventually.HoldsAsync(() => cluster.GetAsync("default", "auto"),
            m => m.Status?.Decisions?.Any(d => d.Tier == "gateway" && d.To < d.From) == true, "the scale-down decision in status");
        Assert.Contains(down.Status!.Decisions!, d => d.Tier == "gateway" && d.To == d.From - 1 && d.Reason.StartsWith("scale down: ", StringComparison.Ordinal));
        Assert.True(cluster.HasEvent("default", "auto", "ScaledDown"));
        // Idle at the minimum: a "no change" decision, in status and as an event.
        await Eventually.HoldsAsync(() => Task.FromResult((Seen: cluster.HasEvent("default", "auto", "ScalingUnchanged", "gateway: 1: no change"), Events: Events())),
            r => r.Seen, "a 'no change' event");
    }

    private static int Replicas(Cluster cluster, Names n) => cluster.Get("deployments", "default", n.Gateway)?["spec"]?["replicas"]?.GetValue<int>() ?? 0;
}
