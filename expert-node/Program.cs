using MoeMesh.Engine.Config;
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
builder.Services.AddSingleton(options);
builder.Services.AddSingleton<NodeMetrics>();
builder.Services.AddSingleton<ExpertHoldings>();
builder.Services.AddHostedService(s => s.GetRequiredService<ExpertHoldings>());
builder.Services.AddSingleton<DispatchEndpoint>();

var app = builder.Build();
var holdings = app.Services.GetRequiredService<ExpertHoldings>();
app.MapGet("/healthz", () => holdings.LoadError is null ? Results.Text("ok") : Results.Text(holdings.LoadError, statusCode: 500));
app.MapGet("/readyz", () => holdings.Backend is not null ? Results.Text("ready") : Results.Text("loading", statusCode: 503));
app.MapGet("/v1/experts", () => Results.Json(new
{
    model_fingerprint = holdings.Fingerprint,
    ready = holdings.Backend is not null,
    layers = holdings.Backend is null ? [] : holdings.Layers.Select(l => new { layer = l, experts = holdings.Experts }).ToArray(),
    expert_bytes = holdings.Backend?.ByteSize ?? 0,
    checkpoint_bytes_read = holdings.CheckpointBytesRead,
}));
app.MapPost("/v1/dispatch", app.Services.GetRequiredService<DispatchEndpoint>().HandleAsync);
app.MapMetrics("/metrics", app.Services.GetRequiredService<NodeMetrics>().Registry);
app.Run();
return 0;
