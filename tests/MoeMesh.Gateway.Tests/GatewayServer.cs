using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using MoeMesh.Engine.Demo;
using MoeMesh.Gateway.Hosting;

namespace MoeMesh.Gateway.Tests;

/// <summary>A real gateway listening on a loopback port, serving a generated demo checkpoint.</summary>
public sealed class GatewayServer : IAsyncDisposable
{
    private static readonly Lazy<string> DemoDir = new(() =>
        DemoModel.EnsureCached(Path.Combine(Path.GetTempPath(), "moemesh-gateway-tests"), DemoShape.Tiny, seed: 3));

    /// <summary>The --admin-api-key every test gateway runs with; <see cref="Admin"/> presents it.</summary>
    public const string AdminKey = "test-admin-key";

    public WebApplication App { get; }
    public Uri BaseAddress { get; }
    public HttpClient Http { get; }

    /// <summary>A client of the /admin routes, presenting <see cref="AdminKey"/>.</summary>
    public HttpClient Admin { get; }
    private static readonly Lazy<string> V2Dir = new(() =>
        DemoModel.EnsureCached(Path.Combine(Path.GetTempPath(), "moemesh-gateway-tests"), DemoShape.TinyV2, seed: 5));

    public static string ModelDir => DemoDir.Value;

    /// <summary>A DeepSeek-V2-shaped demo checkpoint.</summary>
    public static string V2ModelDir => V2Dir.Value;

    private GatewayServer(WebApplication app, Uri address)
    {
        App = app;
        BaseAddress = address;
        Http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(120) };
        Admin = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(120), DefaultRequestHeaders = { Authorization = new("Bearer", AdminKey) } };
    }

    public static Task<GatewayServer> StartAsync(params string[] extraArgs) => StartForAsync(ModelDir, extraArgs);

    public static async Task<GatewayServer> StartForAsync(string modelDir, params string[] extraArgs)
    {
        string[] args = ["--model", modelDir, "--urls", "http://127.0.0.1:0", "--served-model-name", "demo", .. extraArgs];
        // Every test gateway has admin routes unless the test gives its own --admin-api-key ("" turns them off).
        if (!args.Contains("--admin-api-key")) args = [.. args, "--admin-api-key", AdminKey];
        // The demo model needs little cache; many gateways live in one test process.
        if (!args.Contains("--kv-cache-bytes")) args = [.. args, "--kv-cache-bytes", (32L << 20).ToString()];
        var app = GatewayApp.Build(args, _ => null);
        await app.StartAsync();
        return new GatewayServer(app, AddressOf(app));
    }

    /// <summary>Where a started app listens (it was given port 0).</summary>
    public static Uri AddressOf(WebApplication app) =>
        new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>POSTs one request to a fresh in-process gateway (all experts local): the reference output.</summary>
    public static async Task<JsonElement> InProcessJsonAsync(string modelDir, string path, object body)
    {
        await using var local = await StartForAsync(modelDir);
        return await local.PostJsonAsync(path, body);
    }

    /// <summary>A gateway whose experts are on the given nodes, once /readyz says every expert is covered.</summary>
    public static async Task<GatewayServer> StartWithNodesAsync(string modelDir, IEnumerable<ExpertNodeProcess> nodes, params string[] extraArgs)
    {
        var server = await StartForAsync(modelDir, ["--expert-nodes", string.Join(",", nodes.Select(n => n.Address)), .. extraArgs]);
        await server.WaitReadyAsync();
        return server;
    }

    /// <summary>Polls /readyz until it answers <paramref name="ready"/>.</summary>
    public Task WaitReadyAsync(bool ready = true) =>
        Eventually.HoldsAsync(() => GetTextAsync("/readyz"), r => (r.Status == HttpStatusCode.OK) == ready, $"/readyz {(ready ? "ready" : "unready")}");

    /// <summary>GETs a path: its status and body.</summary>
    public async Task<(HttpStatusCode Status, string Body)> GetTextAsync(string path)
    {
        using var response = await Http.GetAsync(path);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>The value of a metric series in /metrics (its name, with its labels if any); null when it is not there.</summary>
    public Task<double?> MetricAsync(string series) => Programs.MetricAsync(Http, series);

    /// <summary>Polls the metric until <paramref name="done"/> holds for its value; returns that value.</summary>
    public Task<double> WaitForMetricAsync(string series, Func<double, bool> done, string what) => Programs.WaitForMetricAsync(Http, series, done, what);

    public Task<HttpResponseMessage> PostAsync(string path, object body) => Http.PostAsJsonAsync(path, body);

    public async Task<JsonElement> PostJsonAsync(string path, object body)
    {
        var response = await PostAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    /// <summary>Reads an SSE response into its JSON payloads; asserts it ends with [DONE].</summary>
    public async Task<List<JsonElement>> PostStreamAsync(string path, object body)
    {
        var response = await PostAsync(path, body);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ")).Select(l => l[6..]).ToList();
        Assert.Equal("[DONE]", lines[^1]);
        return lines.SkipLast(1).Select(l => JsonDocument.Parse(l).RootElement).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        Admin.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
