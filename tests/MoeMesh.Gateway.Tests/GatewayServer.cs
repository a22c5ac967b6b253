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

    public WebApplication App { get; }
    public Uri BaseAddress { get; }
    public HttpClient Http { get; }
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
    }

    public static Task<GatewayServer> StartAsync(params string[] extraArgs) => StartForAsync(ModelDir, extraArgs);

    public static async Task<GatewayServer> StartForAsync(string modelDir, params string[] extraArgs)
    {
        string[] args = ["--model", modelDir, "--urls", "http://127.0.0.1:0", "--served-model-name", "demo", .. extraArgs];
        var app = GatewayApp.Build(args);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new GatewayServer(app, new Uri(address));
    }

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

    /// <summary>Polls /readyz until it answers <paramref name="ready"/> (or 60 s pass, which fails the test).</summary>
    public async Task WaitReadyAsync(bool ready = true)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            var response = await Http.GetAsync("/readyz");
            last = await response.Content.ReadAsStringAsync();
            if (response.IsSuccessStatusCode == ready) return;
            await Task.Delay(50);
        }
        Assert.Fail($"/readyz did not become {(ready ? "ready" : "unready")}: {last}");
    }

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
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
