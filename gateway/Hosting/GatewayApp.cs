using k8s;
using Microsoft.AspNetCore.Diagnostics;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Gateway.Api;
using MoeMesh.Gateway.KvStore;
using MoeMesh.Gateway.Metrics;
using MoeMesh.Gateway.Routing;
using MoeMesh.Gateway.Serving;
using Prometheus;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.LoadBalancing;

namespace MoeMesh.Gateway.Hosting;

/// <summary>Builds the gateway web application from its options.</summary>
public static class GatewayApp
{
    /// <summary>Parses a command line and builds; throws <see cref="MoeMesh.Cli.CommandLineException"/> for a bad one.</summary>
    public static WebApplication Build(IReadOnlyList<string> args, Func<string, string?>? environment = null) =>
        Build(GatewayOptions.Parse(args, environment) ?? throw new ArgumentException("--help asks for the usage, not a server"));

    public static WebApplication Build(GatewayOptions options)
    {
        // The options come from our own parser; the host gets no command line to read on its own.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions());
        builder.WebHost.UseUrls(options.Urls);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxRequestBytes);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        string dir;
        using (var loggerFactory = LoggerFactory.Create(l => l.AddConsole())) dir = ModelHost.ResolveDirectory(options, loggerFactory.CreateLogger("MoeMesh.Gateway"));
        if (options.RemoteExperts)
            AddExpertTier(builder.Services, ExpertNode.Reconcile([], options.ExpertNodes ?? []), ModelConfig.Load(Path.Combine(dir, "config.json")), ModelFingerprint.Of(dir), options);
        if (options.ExpertDiscovery is { } target)
        {
            var kube = options.Kubeconfig is { } file ? KubernetesClientConfiguration.BuildConfigFromConfigFile(file) : KubernetesClientConfiguration.BuildDefaultConfig();
            builder.Services.AddSingleton<IKubernetes>(new Kubernetes(kube));
            builder.Services.AddHostedService(sp => new EndpointSliceDiscovery(sp.GetRequiredService<IKubernetes>(), target, sp.GetRequiredService<ExpertNodeDirectory>(),
                sp.GetRequiredService<GatewayMetrics>(), sp.GetRequiredService<ILogger<EndpointSliceDiscovery>>()));
        }
        builder.Services.AddSingleton(sp => ModelHost.Load(options, dir, sp.GetRequiredService<ILoggerFactory>().CreateLogger("MoeMesh.Gateway"), sp.GetService<YarpExpertRouter>()));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<GatewayMetrics>();
        if (options.KvStoreSettings is { } store) AddKvStore(builder.Services, store, dir);
        builder.Services.AddSingleton<EngineLoop>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<EngineLoop>());
        builder.Services.AddSingleton<CompletionsEndpoint>();
        builder.Services.AddSingleton<ChatCompletionsEndpoint>();
        builder.Services.AddSingleton<TokenizeEndpoints>();

        var app = builder.Build();
        app.UseExceptionHandler(new ExceptionHandlerOptions { ExceptionHandler = InternalErrorAsync, SuppressDiagnosticsCallback = _ => true });
        // Errors with no body of their own (an unknown route, a wrong method, a body over the size limit) get OpenAI's shape too.
        app.UseStatusCodePages(async ctx =>
        {
            var status = ctx.HttpContext.Response.StatusCode;
            await OpenAiErrors.Write(ctx.HttpContext, status, status switch
            {
                404 => $"no route {ctx.HttpContext.Request.Path}",
                405 => $"method {ctx.HttpContext.Request.Method} is not allowed on {ctx.HttpContext.Request.Path}",
                413 => "the request body is too large",
                _ => $"HTTP {status}",
            }, status >= 500 ? "server_error" : "invalid_request_error");
        });
        app.Services.GetService<YarpExpertRouter>()?.Bind(app.Services);
        // Load now: a bad checkpoint or option fails the start, not the first request.
        var host = app.Services.GetRequiredService<ModelHost>();
        if (BearerKey.From(options.ApiKey) is { } apiKey)
        {
            // The inference API, and vLLM's tokenizer routes at the root as well as under /v1.
            foreach (var prefix in new[] { "/v1", "/tokenize", "/detokenize" }) app.UseMiddleware<ApiKeyMiddleware>(new PathString(prefix), apiKey);
        }
        var adminKey = BearerKey.From(options.AdminApiKey);
        if (adminKey is not null) app.UseMiddleware<ApiKeyMiddleware>(new PathString("/admin"), adminKey);
        app.MapOpenAiApi();
        var metrics = app.Services.GetRequiredService<GatewayMetrics>();
        var loop = app.Services.GetRequiredService<EngineLoop>();
        if (app.Services.GetService<RedisKvPageStore>() is { } kvStore)
        {
            var storeMetrics = app.Services.GetRequiredService<KvStoreMetrics>();
            metrics.Registry.AddBeforeCollectCallback(() => storeMetrics.Up.Set(kvStore.IsUp ? 1 : 0));
        }
        // Read at scrape time: the bound --max-queue enforces, even while the loop is busy with a long step.
        metrics.Registry.AddBeforeCollectCallback(() => metrics.RequestsWaiting.Set(loop.Waiting));
        if (app.Services.GetService<ExpertTier>() is { } tier)
        {
            // The proxy always runs: its configuration and health checks are what keep nodes available. Its admin
            // routes (node proxies), the routing table and the node set exist only with an admin key.
            app.MapReverseProxy();
            if (adminKey is not null) app.MapExpertAdmin(tier);
            metrics.Registry.AddBeforeCollectCallback(() =>
            {
                var coverage = tier.Coverage(host.Engine.Model.Config);
                metrics.ExpertCoverage.Set(coverage.Ratio);
                metrics.ExpertNodesAvailable.Set(coverage.AvailableNodes);
                metrics.PlacementGenerationMin.Set(tier.Directory.MinPlacementGeneration());
                if (host.RemoteExperts is { } remote) metrics.ExpertWait.IncTo(remote.WaitTime.TotalSeconds);
            });
        }
        else
        {
            metrics.ExpertCoverage.Set(1);
        }
        app.MapMetrics("/metrics", metrics.Registry);
        // The routed-token load per MoE layer and expert over the last minute, for the placement planner: one compact
        // document instead of 58 x 256 metric series. Read-only, next to /metrics and as open.
        app.MapGet("/metrics/expert-load", (ModelHost host) =>
        {
            if (host.ExpertLoad is not { } load)
                return OpenAiErrors.Result(404, "the experts run in-process: there is no routed load to report", "invalid_request_error", code: "no_expert_tier");
            var counts = load.Read();
            var config = host.Engine.Model.Config;
            return Results.Json(new
            {
                window_seconds = load.Window.TotalSeconds,
                experts = config.NRoutedExperts,
                layers = Enumerable.Range(0, config.NumHiddenLayers).Where(config.IsMoeLayer).Select(l => new { layer = l, tokens = counts[l] }),
            });
        });
        return app;
    }

    /// <summary>
    /// The process's exit code once the host has stopped: 1 when the engine loop failed, so that a supervisor
    /// restarts it. Ask for it before running the host (which disposes its services when it stops).
    /// </summary>
    public static Func<int> ExitCodeOnceStopped(WebApplication app)
    {
        var loop = app.Services.GetRequiredService<EngineLoop>();
        return () => loop.Failed ? 1 : 0;
    }

    /// <summary>Anything a handler did not turn into an API error: logged with a reference, answered as an OpenAI-shaped 500 without its text.</summary>
    private static async Task InternalErrorAsync(HttpContext ctx)
    {
        var error = ctx.Features.Get<IExceptionHandlerFeature>()?.Error;
        var reference = Guid.NewGuid().ToString("N")[..12];
        ctx.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("MoeMesh.Gateway").LogError(error, "Unhandled error serving {Path} (reference {Reference})", ctx.Request.Path, reference);
        ctx.RequestServices.GetRequiredService<GatewayMetrics>().Rejected.WithLabels("500").Inc();
        await OpenAiErrors.Write(ctx, 500, $"internal error (reference {reference}; the server log has the details)", "server_error", "internal_error");
    }

    /// <summary>The shared KV page store; a hosted service started before the engine loop and stopped after it.</summary>
    private static void AddKvStore(IServiceCollection services, KvStoreSettings settings, string dir)
    {
        services.AddSingleton<KvStoreMetrics>();
        services.AddSingleton(sp => new RedisKvPageStore(settings, KvPageLayout.Of(sp.GetRequiredService<ModelHost>().Engine, dir),
            sp.GetRequiredService<KvStoreMetrics>(), sp.GetRequiredService<ILogger<RedisKvPageStore>>()));
        services.AddSingleton<IKvPageStore>(sp => sp.GetRequiredService<RedisKvPageStore>());
        services.AddHostedService(sp => sp.GetRequiredService<RedisKvPageStore>());
    }

    /// <summary>Remote experts: the holdings directory, YARP (health, balancing, admin routes) and the router the engine dispatches through.</summary>
    private static void AddExpertTier(IServiceCollection services, IReadOnlyList<ExpertNode> nodes, ModelConfig config, string fingerprint, GatewayOptions options)
    {
        var nodeKey = BearerKey.From(options.ExpertApiKey);
        var admin = options.AdminApiKey is not null;
        services.AddSingleton(sp => new ExpertNodeDirectory(nodes, fingerprint, config, nodeKey, admin,
            sp.GetRequiredService<InMemoryConfigProvider>(), sp.GetRequiredService<ILogger<ExpertNodeDirectory>>()));
        services.AddHostedService(sp => sp.GetRequiredService<ExpertNodeDirectory>());
        // A reply holds one float32 row per token of a step at most.
        var maxReply = Math.Min(int.MaxValue, 4L * options.MaxBatchTokens * config.HiddenSize + (64 << 10));
        services.AddSingleton(sp => new YarpExpertRouter(sp.GetRequiredService<ExpertNodeDirectory>(), fingerprint, nodeKey,
            TimeSpan.FromMilliseconds(options.ExpertTimeoutMs), maxReply, sp.GetRequiredService<GatewayMetrics>(), sp.GetRequiredService<ILogger<YarpExpertRouter>>()));
        services.AddSingleton<ExpertTier>();
        services.AddSingleton<ILoadBalancingPolicy, LeastOutstandingWorkPolicy>();
        services.AddReverseProxy().LoadFromMemory(ExpertProxyConfig.Routes(nodes, nodeKey, admin), ExpertProxyConfig.Clusters(nodes));
    }
}
