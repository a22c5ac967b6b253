using System.Net;
using System.Text;
using k8s;
using Microsoft.Extensions.Logging.Abstractions;
using MoeMesh.Operator.Scaling;

namespace MoeMesh.Operator.Tests.Scaling;

/// <summary>
/// The pods' own /metrics as the autoscaler's load source, over real HTTP: gauges at once; rates and means from the
/// change between two samples, so that a pod counts from its second sample on and a restarted pod starts over.
/// </summary>
public sealed class PodLoadSourceTests : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Uri _url;
    private volatile string _text = "";

    public PodLoadSourceTests()
    {
        // A free port: bind, read it back, then serve.
        var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        _url = new Uri($"http://127.0.0.1:{port}/");
        _listener.Prefixes.Add(_url.ToString());
        _listener.Start();
        _ = Task.Run(async () =>
        {
            while (_listener.IsListening)
            {
                HttpListenerContext ctx;
                try
                {
                    ctx = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }
                var body = Encoding.UTF8.GetBytes(_text);
                ctx.Response.ContentType = "text/plain; version=0.0.4";
                await ctx.Response.OutputStream.WriteAsync(body);
                ctx.Response.Close();
            }
        });
    }

    private static string Metrics(double waiting, double compute, double queueSum, double queueCount) => $$"""
        # TYPE moemesh_requests_waiting gauge
        moemesh_requests_waiting {{waiting}}
        moemesh_requests_running 2
        # TYPE moemesh_expert_compute_seconds summary
        moemesh_expert_compute_seconds_sum {{compute}}
        moemesh_expert_compute_seconds_count 10
        # TYPE moemesh_expert_queue_seconds histogram
        moemesh_expert_queue_seconds_bucket{le="+Inf"} {{queueCount}}
        moemesh_expert_queue_seconds_sum {{queueSum}}
        moemesh_expert_queue_seconds_count {{queueCount}}

        """;

    [Fact]
    public async Task Gauges_AreReadAtOnce_RatesAndMeans_FromTheSecondSample()
    {
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = "http://127.0.0.1:1" });
        using var scraper = new PodScraper(client, NullLogger<PodScraper>.Instance);
        var source = new PodLoadSource(scraper, new ScalingSettings(TimeSpan.FromSeconds(1)));
        ReadyPod[] pods = [new("p-0", _url)];
        Signal[] signals =
        [
            new(SignalKind.Gauge, "moemesh_requests_waiting", "moemesh_requests_running"),
            new(SignalKind.Rate, "moemesh_expert_compute_seconds_sum"),
            new(SignalKind.Mean, "moemesh_expert_queue_seconds"),
        ];

        _text = Metrics(waiting: 3, compute: 10, queueSum: 1, queueCount: 4);
        Assert.Empty(await source.SampleAsync("default", "svc", pods, signals, CancellationToken.None));
        Assert.Equal(5.0, (await source.SampleAsync("default", "svc", pods, [signals[0]], CancellationToken.None))["p-0"][0]);

        // Some time later: 2 more compute seconds; 4 more dispatches that queued 2 s in all.
        var before = DateTime.UtcNow;
        await Eventually.HoldsAsync(() => Task.FromResult(DateTime.UtcNow - before > TimeSpan.FromMilliseconds(200)), "time passing");
        _text = Metrics(waiting: 1, compute: 12, queueSum: 3, queueCount: 8);
        var second = await source.SampleAsync("default", "svc", pods, signals, CancellationToken.None);
        var v = second["p-0"];
        Assert.Equal(3.0, v[0]);
        Assert.True(v[1] > 0 && v[1] < 2 / 0.2, $"rate {v[1]}: 2 compute seconds over more than 0.2 s");
        Assert.Equal(0.5, v[2], 1e-9);

        // Nothing dispatched since: the mean is 0 and the rate too.
        _text = Metrics(waiting: 0, compute: 12, queueSum: 3, queueCount: 8);
        var idle = (await source.SampleAsync("default", "svc", pods, signals, CancellationToken.None))["p-0"];
        Assert.Equal(0.0, idle[1]);
        Assert.Equal(0.0, idle[2]);

        // A restarted pod (its counters went down) counts again only from its next sample.
        _text = Metrics(waiting: 0, compute: 1, queueSum: 0, queueCount: 0);
        Assert.Empty(await source.SampleAsync("default", "svc", pods, signals, CancellationToken.None));
        Assert.Single(await source.SampleAsync("default", "svc", pods, signals, CancellationToken.None));
    }

    [Fact]
    public async Task APodThatDoesNotAnswer_HasNoSample()
    {
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = "http://127.0.0.1:1" });
        using var scraper = new PodScraper(client, NullLogger<PodScraper>.Instance);
        var source = new PodLoadSource(scraper, new ScalingSettings(TimeSpan.FromSeconds(1)));
        _listener.Stop();
        var sampled = await source.SampleAsync("default", "svc", [new ReadyPod("p-0", _url)], [new Signal(SignalKind.Gauge, "moemesh_requests_waiting")], CancellationToken.None);
        Assert.Empty(sampled);
    }

    public void Dispose() => _listener.Close();
}
