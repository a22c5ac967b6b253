using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MoeMesh.Gateway.Tests.Routing;

/// <summary>
/// A peer that speaks the expert node's HTTP API badly on purpose, as a broken or hostile node would: it
/// answers /healthz, and /v1/experts with whatever the test sets. It records the requests it gets.
/// </summary>
internal sealed class FakeExpertNode : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<(string Path, string Authorization)> _seen = [];

    public Uri Address { get; }

    /// <summary>The reply to GET /v1/experts: status, body and headers.</summary>
    public volatile Func<HttpContext, Task> Experts = ctx => Results.Json(new { }).ExecuteAsync(ctx);

    private FakeExpertNode(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    public IReadOnlyList<(string Path, string Authorization)> Seen
    {
        get
        {
            lock (_seen) return _seen.ToList();
        }
    }

    public static async Task<FakeExpertNode> StartAsync()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions());
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        FakeExpertNode? node = null;
        app.Use(async (ctx, next) =>
        {
            lock (node!._seen) node._seen.Add((ctx.Request.Path, ctx.Request.Headers.Authorization.ToString()));
            await next(ctx);
        });
        app.MapGet("/healthz", () => "ok");
        app.MapGet("/v1/experts", (HttpContext ctx) => node!.Experts(ctx));
        await app.StartAsync();
        node = new FakeExpertNode(app, GatewayServer.AddressOf(app));
        return node;
    }

    /// <summary>Answers /v1/experts with this JSON text.</summary>
    public void ReportJson(string json) => Experts = ctx =>
    {
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(json);
    };

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
