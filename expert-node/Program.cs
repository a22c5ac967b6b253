using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using MoeMesh.ExpertNode.Serving;
using Prometheus;

// The expert node: loads only its assigned routed experts from the checkpoint and computes them for gateways.
if (args.Contains("--help"))
{
    Console.WriteLine(NodeOptions.Usage);
    return 0;
}
var builder = WebApplication.CreateBuilder(args);
builder.Configuration.AddEnvironmentVariables("MOEMESH_");
if (string.IsNullOrEmpty(builder.Configuration["urls"])) builder.WebHost.UseUrls("http://127.0.0.1:9000");
NodeOptions options;
try
{
    options = NodeOptions.FromConfiguration(builder.Configuration);
}
catch (Exception e) when (e is ArgumentException or ModelConfigException or IOException)
{
    Console.Error.WriteLine($"moemesh-expert-node: {e.Message}");
    return 2;
}
if (options.Threads is { } threads) TorchSharp.torch.set_num_threads(threads);
builder.Services.AddSingleton(options);
builder.Services.AddSingleton<NodeMetrics>();
builder.Services.AddSingleton<ExpertHoldings>();
builder.Services.AddHostedService(s => s.GetRequiredService<ExpertHoldings>());
builder.Services.AddSingleton<DispatchEndpoint>();

var app = builder.Build();
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
app.MapGet("/healthz", () => holdings.LoadError is null ? Results.Text("ok") : Results.Text(holdings.LoadError, statusCode: 500));
app.MapGet("/readyz", () => holdings.Advertised is not null ? Results.Text("ready") : Results.Text("loading", statusCode: 503));
app.MapGet("/v1/experts", () => Results.Json(new
{
    model_fingerprint = holdings.Fingerprint,
    ready = holdings.Advertised is not null,
    layers = holdings.Advertised?.Layers.Select(l => new { layer = l.Key, experts = l.Value }).ToArray() ?? [],
    expert_bytes = holdings.ExpertBytes,
    checkpoint_bytes_read = holdings.CheckpointBytesRead,
}));
app.MapPost("/v1/placement", async (HttpContext ctx) =>
{
    // Accepted at once; loading runs in the background and /v1/experts shows the new holdings when it is done.
    var text = await new StreamReader(ctx.Request.Body).ReadToEndAsync(ctx.RequestAborted);
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
    _ = Task.Run(() => holdings.ApplyAsync(placement, app.Lifetime.ApplicationStopping));
    return Results.Accepted("/v1/experts", new { layers = placement.Layers.Select(l => new { layer = l.Key, experts = l.Value }) });
});
app.MapPost("/v1/dispatch", app.Services.GetRequiredService<DispatchEndpoint>().HandleAsync);
app.MapMetrics("/metrics", app.Services.GetRequiredService<NodeMetrics>().Registry);
app.Run();
return 0;
