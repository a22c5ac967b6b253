using System.Security.Cryptography;
using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;

// The expert node: loads only its assigned routed experts from the checkpoint and reports them.
// Serving expert calls over the dispatch endpoint arrives with the expert-sharding release.
if (args.Contains("--help"))
{
    Console.WriteLine("""
        moemesh-expert-node: holds a subset of a DeepSeek model's routed experts
          --model DIR       Hugging Face checkpoint folder
          --experts SPEC    all, 0-15 or 0,3,9-12 (default all)
          --urls URL        listen address (default http://127.0.0.1:9000)
          --device DEV      cpu, cuda or cuda:N
        """);
    return 0;
}
var builder = WebApplication.CreateBuilder(args);
builder.Configuration.AddEnvironmentVariables("MOEMESH_");
if (string.IsNullOrEmpty(builder.Configuration["urls"])) builder.WebHost.UseUrls("http://127.0.0.1:9000");
var dir = builder.Configuration["model"];
if (string.IsNullOrEmpty(dir))
{
    Console.Error.WriteLine("moemesh-expert-node: --model is required");
    return 2;
}
ModelConfig config;
IReadOnlyList<int> experts;
LocalExpertBackend backend;
try
{
    config = ModelConfig.Load(Path.Combine(dir, "config.json"));
    experts = ExpertSet.Parse(builder.Configuration["experts"] ?? "all", config.NRoutedExperts);
    using var reader = new CheckpointReader(dir);
    backend = new LocalExpertBackend(config, reader, ComputeOptions.Parse(builder.Configuration["device"]), experts);
}
catch (Exception e) when (e is ArgumentException or ModelConfigException or CheckpointException or IOException)
{
    Console.Error.WriteLine($"moemesh-expert-node: {e.Message}");
    return 2;
}
var fingerprint = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, "config.json"))))[..16];
var layers = Enumerable.Range(0, config.NumHiddenLayers).Where(config.IsMoeLayer).ToArray();

var app = builder.Build();
app.MapGet("/healthz", () => Results.Text("ok"));
app.MapGet("/readyz", () => Results.Text("ready"));
app.MapGet("/v1/experts", () => Results.Json(new
{
    model_fingerprint = fingerprint,
    layers = layers.Select(l => new { layer = l, experts }),
    expert_bytes = backend.ByteSize,
}));
app.Run();
return 0;
