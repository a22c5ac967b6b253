using k8s;
using MoeMesh.Cli;
using MoeMesh.Operator.Crd;
using MoeMesh.Operator.Hosting;
using MoeMesh.Operator.Reconcile;
using MoeMesh.Operator.Scaling;
using Prometheus;

// The MoeDeployment operator (group moemesh.dev, version v1alpha1). `moemesh-operator crd` prints the
// CustomResourceDefinition generated from the C# types, `moemesh-operator crd-reference` its field reference;
// otherwise it reconciles MoeDeployments.
if (args is ["crd"])
{
    Console.Write(CrdGenerator.Yaml());
    return 0;
}
if (args is ["crd-reference"])
{
    Console.Write(CrdReference.Markdown());
    return 0;
}
OperatorOptions options;
try
{
    if (OperatorOptions.Parse(args) is not { } parsed)
    {
        Console.WriteLine(OperatorOptions.Usage());
        return 0;
    }
    options = parsed;
}
catch (CommandLineException e)
{
    return e.Report();
}
KubernetesClientConfiguration kube;
try
{
    kube = options.Kubeconfig is { } file ? KubernetesClientConfiguration.BuildConfigFromConfigFile(file) : KubernetesClientConfiguration.BuildDefaultConfig();
}
catch (Exception e) when (e is k8s.Exceptions.KubeConfigException or IOException)
{
    Console.Error.WriteLine($"moemesh-operator: no Kubernetes API to talk to: {e.Message}");
    return 2;
}

// The options come from our own parser; the host gets no command line to read on its own.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions());
builder.WebHost.UseUrls(options.Urls);
builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
builder.Services.AddSingleton(options);
builder.Services.AddSingleton(options.Controller);
builder.Services.AddSingleton<IKubernetes>(new Kubernetes(kube));
builder.Services.AddSingleton<OperatorMetrics>();
builder.Services.AddSingleton(sp => new EventRecorder(sp.GetRequiredService<IKubernetes>(), options.Identity, sp.GetRequiredService<ILogger<EventRecorder>>()));
builder.Services.AddSingleton<ScalingState>();
builder.Services.AddSingleton(new ScalingSettings(options.ScalingInterval));
builder.Services.AddSingleton<PodScraper>();
if (options.Prometheus is { } prometheusUrl)
    builder.Services.AddSingleton<ILoadSource>(sp => new PrometheusLoadSource(prometheusUrl, options.PrometheusWindow, sp.GetRequiredService<OperatorMetrics>(), sp.GetRequiredService<ILogger<PrometheusLoadSource>>()));
else
    builder.Services.AddSingleton<ILoadSource, PodLoadSource>();
builder.Services.AddSingleton<ScalingLoop>();
builder.Services.AddSingleton<PlacementLoop>();
builder.Services.AddSingleton<Reconciler>();
builder.Services.AddSingleton<Controller>();
builder.Services.AddSingleton<LeaderService>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<LeaderService>());

var app = builder.Build();
// Probes and metrics only, for the cluster network: nothing here reads a secret or changes state.
var leader = app.Services.GetRequiredService<LeaderService>();
var metrics = app.Services.GetRequiredService<OperatorMetrics>();
app.MapGet("/healthz", () => Results.Text("ok"));
app.MapGet("/readyz", () => leader.Ready ? Results.Text("ready") : Results.Text("waiting for the API server", statusCode: 503));
app.MapMetrics(registry: metrics.Registry);
await app.RunAsync();
return Environment.ExitCode;
