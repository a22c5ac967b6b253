using MoeMesh.Engine.Dispatch;
using MoeMesh.Gateway.Api;
using MoeMesh.Gateway.Metrics;
using MoeMesh.Gateway.Routing;
using MoeMesh.Gateway.Serving;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.LoadBalancing;
using Prometheus;

namespace MoeMesh.Gateway.Hosting;

/// <summary>Builds the gateway web application from command-line arguments.</summary>
public static class GatewayApp
{
    public const string DefaultUrl = "http://127.0.0.1:8080";

    public static WebApplication Build(string[] args)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args });
        builder.Configuration.AddEnvironmentVariables("MOEMESH_");
        builder.Configuration.AddCommandLine(args);
        if (string.IsNullOrEmpty(builder.Configuration["urls"])) builder.WebHost.UseUrls(DefaultUrl);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        var options = GatewayOptions.FromConfiguration(builder.Configuration);
        if (options.KvStore != "memory")
            throw new ArgumentException($"--kv-store '{options.KvStore}': only 'memory' is available in this build");
        string dir;
        using (var loggerFactory = LoggerFactory.Create(l => l.AddConsole())) dir = ModelHost.ResolveDirectory(options, loggerFactory.CreateLogger("MoeMesh.Gateway"));
        var nodes = string.IsNullOrEmpty(options.ExpertNodes) ? null : ExpertNode.ParseList(options.ExpertNodes);
        if (nodes is not null) AddExpertTier(builder.Services, nodes, ModelFingerprint.Of(dir), options);
        builder.Services.AddSingleton(sp => ModelHost.Load(options, dir, sp.GetRequiredService<ILoggerFactory>().CreateLogger("MoeMesh.Gateway"), sp.GetService<YarpExpertRouter>()));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<GatewayMetrics>();
        builder.Services.AddSingleton<EngineLoop>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<EngineLoop>());
        builder.Services.AddSingleton<CompletionsEndpoint>();
        builder.Services.AddSingleton<ChatCompletionsEndpoint>();

        var app = builder.Build();
        app.Services.GetService<YarpExpertRouter>()?.Bind(app.Services);
        // Load now: a bad checkpoint or option fails the start, not the first request.
        var host = app.Services.GetRequiredService<ModelHost>();
        if (BearerKey.From(options.ApiKey) is { } apiKey) app.UseMiddleware<ApiKeyMiddleware>(apiKey);
        app.MapOpenAiApi();
        var metrics = app.Services.GetRequiredService<GatewayMetrics>();
        if (app.Services.GetService<ExpertTier>() is { } tier)
        {
            app.MapReverseProxy();
            app.MapExpertAdmin(tier);
            metrics.Registry.AddBeforeCollectCallback(() =>
            {
                var coverage = tier.Coverage(host.Engine.Model.Config);
                metrics.ExpertCoverage.Set(coverage.Ratio);
                metrics.ExpertNodesAvailable.Set(coverage.AvailableNodes);
                if (host.RemoteExperts is { } remote) metrics.ExpertWait.IncTo(remote.WaitTime.TotalSeconds);
            });
        }
        else
        {
            metrics.ExpertCoverage.Set(1);
        }
        app.MapMetrics("/metrics", metrics.Registry);
        return app;
    }

    /// <summary>Remote experts: the holdings directory, YARP (health, balancing, admin routes) and the router the engine dispatches through.</summary>
    private static void AddExpertTier(IServiceCollection services, IReadOnlyList<ExpertNode> nodes, string fingerprint, GatewayOptions options)
    {
        var nodeKey = BearerKey.From(options.ExpertApiKey);
        services.AddSingleton(sp => new ExpertNodeDirectory(nodes, fingerprint, nodeKey, sp.GetRequiredService<InMemoryConfigProvider>(), sp.GetRequiredService<ILogger<ExpertNodeDirectory>>()));
        services.AddHostedService(sp => sp.GetRequiredService<ExpertNodeDirectory>());
        services.AddSingleton(sp => new YarpExpertRouter(sp.GetRequiredService<ExpertNodeDirectory>(), fingerprint, nodeKey,
            TimeSpan.FromMilliseconds(options.ExpertTimeoutMs), sp.GetRequiredService<GatewayMetrics>(), sp.GetRequiredService<ILogger<YarpExpertRouter>>()));
        services.AddSingleton<ExpertTier>();
        services.AddSingleton<ILoadBalancingPolicy, LeastOutstandingWorkPolicy>();
        services.AddReverseProxy().LoadFromMemory(ExpertProxyConfig.Routes(nodes, nodeKey), ExpertProxyConfig.Clusters(nodes));
    }

    public static string Usage()
    {
        var lines = new List<string> { "moemesh-gateway: OpenAI-compatible server for DeepSeek-V2/V3 MoE models", "", "Options (also MOEMESH_<NAME> variables, e.g. MOEMESH_MODEL):" };
        lines.AddRange(GatewayOptions.Options.Select(o => $"  {o.Option,-42} {o.Help}"));
        return string.Join(Environment.NewLine, lines);
    }
}
