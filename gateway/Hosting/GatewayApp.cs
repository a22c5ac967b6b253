using MoeMesh.Gateway.Api;
using MoeMesh.Gateway.Metrics;
using MoeMesh.Gateway.Serving;
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
        using (var loggerFactory = LoggerFactory.Create(l => l.AddConsole()))
        {
            var host = ModelHost.Load(options, loggerFactory.CreateLogger("MoeMesh.Gateway"));
            builder.Services.AddSingleton(host);
        }
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<GatewayMetrics>();
        builder.Services.AddSingleton<EngineLoop>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<EngineLoop>());
        builder.Services.AddSingleton<CompletionsEndpoint>();
        builder.Services.AddSingleton<ChatCompletionsEndpoint>();

        var app = builder.Build();
        if (!string.IsNullOrEmpty(options.ApiKey)) app.UseMiddleware<ApiKeyMiddleware>(options.ApiKey);
        app.MapOpenAiApi();
        app.MapMetrics("/metrics", app.Services.GetRequiredService<GatewayMetrics>().Registry);
        return app;
    }

    public static string Usage()
    {
        var lines = new List<string> { "moemesh-gateway: OpenAI-compatible server for DeepSeek-V2/V3 MoE models", "", "Options (also MOEMESH_<NAME> variables, e.g. MOEMESH_MODEL):" };
        lines.AddRange(GatewayOptions.Options.Select(o => $"  {o.Option,-42} {o.Help}"));
        return string.Join(Environment.NewLine, lines);
    }
}
