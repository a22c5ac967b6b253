using Microsoft.AspNetCore.Diagnostics;
using MoeMesh.Cli;
using MoeMesh.Engine.Experts;
using MoeMesh.ExpertNode.Serving;
using Prometheus;

// The expert node: loads only its assigned routed experts from the checkpoint and computes them for gateways.
// It is meant for the cluster network: /v1 takes --api-key, and without one only dispatch and holdings are open.
NodeOptions options;
try
{
    if (NodeOptions.Parse(args) is not { } parsed)
    {
        Console.WriteLine(NodeOptions.Usage());
        return 0;
    }
    options = parsed;
}
catch (CommandLineException e)
{
    return e.Report();
}
// The options come from our own parser; the host gets no command line to read on its own.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions());
builder.WebHost.UseUrls(options.Urls);
// Small bodies everywhere but /v1/dispatch, which sets its own limit from the model.
builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = 1 << 20);
builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
builder.Services.AddSingleton(options);
builder.Services.AddSingleton<NodeMetrics>();
builder.Services.AddSingleton<ExpertHoldings>();
builder.Services.AddHostedService(s => s.GetRequiredService<ExpertHoldings>());
builder.Services.AddSingleton<DispatchEndpoint>();

var app = builder.Build();
app.UseExceptionHandler(new ExceptionHandlerOptions
{
    SuppressDiagnosticsCallback = _ => true,
    ExceptionHandler = async ctx =>
    {
        app.Logger.LogError(ctx.Features.Get<IExceptionHandlerFeature>()?.Error, "Unhandled error serving {Path}", ctx.Request.Path);
        await NodeError.Result(500, "internal_error", "internal error; the node's log has the details", "server_error").ExecuteAsync(ctx);
    },
});
var holdings = app.Services.GetRequiredService<ExpertHoldings>();
if (options.ApiKey is { } key)
{
    // Dispatch, holdings and placement need the key; probes and /metrics stay open, as on the gateway.
    app.Use(async (ctx, next) =>
    {
        if (ctx.Request.Path.StartsWithSegments("/v1") && !key.Accepts(ctx.Request.Headers.Authorization.ToString()))
        {
            await NodeError.Result(401, "invalid_api_key", "Incorrect API key provided", "invalid_request_error").ExecuteAsync(ctx);
            return;
        }
        await next(ctx);
    });
}
app.MapGet("/healthz", () => holdings.LoadFailed ? Results.Text("loading the experts failed; the node's log says why", statusCode: 500) : Results.Text("ok"));
app.MapGet("/readyz", () => holdings.Advertised is not null ? Results.Text("ready") : Results.Text("loading", statusCode: 503));
app.MapGet("/v1/experts", () => Results.Json(new
{
    model_fingerprint = holdings.Fingerprint,
    ready = holdings.Advertised is not null,
    layers = holdings.Advertised?.Layers.Select(l => new { layer = l.Key, experts = l.Value }).ToArray() ?? [],
    expert_bytes = holdings.ExpertBytes,
    checkpoint_bytes_read = holdings.CheckpointBytesRead,
    max_dispatch_tokens = options.MaxDispatchTokens,
    placement = new { state = holdings.State.ToString(), error = holdings.PlacementError, generation = holdings.Advertised?.Generation },
}));
app.MapPost("/v1/placement", async (HttpContext ctx) =>
{
    // Changing what a node holds over HTTP needs its key; without one, the --placement file is the only way.
    if (options.ApiKey is null)
        return NodeError.Result(403, "placement_needs_api_key", "placement changes over HTTP need the node to run with --api-key; use the --placement file instead", "invalid_request_error");
    string text;
    try
    {
        text = await new StreamReader(ctx.Request.Body).ReadToEndAsync(ctx.RequestAborted);
    }
    catch (BadHttpRequestException e)
    {
        return NodeError.Result(e.StatusCode, "bad_placement", "the placement document could not be read (it is limited to 1 MiB)", "invalid_request_error");
    }
    ExpertPlacement placement;
    try
    {
        placement = ExpertPlacement.Parse(holdings.Config, text);
    }
    catch (ArgumentException e)
    {
        return NodeError.Result(400, "bad_placement", e.Message, "invalid_request_error", "layers");
    }
    if (holdings.Advertised is null) return NodeError.Result(503, "loading", "the node is still loading its experts", "server_error");
    // Accepted at once; loading runs in the background, /v1/experts shows its progress and any failure.
    _ = Task.Run(() => holdings.ApplyAsync(placement, app.Lifetime.ApplicationStopping));
    return Results.Accepted("/v1/experts", new { layers = placement.Layers.Select(l => new { layer = l.Key, experts = l.Value }) });
});
app.MapPost("/v1/dispatch", app.Services.GetRequiredService<DispatchEndpoint>().HandleAsync);
app.MapMetrics("/metrics", app.Services.GetRequiredService<NodeMetrics>().Registry);
app.Run();
return 0;
