using MoeMesh.Engine.Text;
using MoeMesh.Gateway.Hosting;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Api;

/// <summary>Maps the OpenAI-compatible routes and shared request checks.</summary>
public static class Endpoints
{
    public static void MapOpenAiApi(this WebApplication app)
    {
        app.MapPost("/v1/completions", (HttpContext ctx, CompletionsEndpoint e) => Guard(ctx, () => e.HandleAsync(ctx)));
        app.MapPost("/v1/chat/completions", (HttpContext ctx, ChatCompletionsEndpoint e) => Guard(ctx, () => e.HandleAsync(ctx)));
        foreach (var prefix in new[] { "", "/v1" })
        {
            app.MapPost($"{prefix}/tokenize", (HttpContext ctx, TokenizeEndpoints e) => Guard(ctx, () => e.TokenizeAsync(ctx)));
            app.MapPost($"{prefix}/detokenize", (HttpContext ctx, TokenizeEndpoints e) => Guard(ctx, () => e.DetokenizeAsync(ctx)));
        }
        app.MapGet("/v1/models", (ModelHost host) => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = host.Name, @object = "model", created = 0, owned_by = "moemesh", max_model_len = host.Engine.MaxModelLength } },
        }));
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", (EngineLoop loop, ModelHost host, IServiceProvider sp) =>
        {
            var (ready, text) = Readiness(loop, host, sp.GetService<Routing.ExpertTier>());
            // The shared store is a cache: its state is reported, and never makes the gateway unready.
            if (sp.GetService<KvStore.IKvPageStore>() is { } store) text += $"; {store.Describe()}";
            return Results.Text(text, statusCode: ready ? 200 : 503);
        });
    }

    private static (bool Ready, string Text) Readiness(EngineLoop loop, ModelHost host, Routing.ExpertTier? tier)
    {
        if (loop.Failed) return (false, "the engine failed; the gateway is restarting");
        if (!loop.Accepting) return (false, "shutting down");
        if (tier is null) return (true, "ready");
        var coverage = tier.Coverage(host.Engine.Model.Config);
        if (coverage.Uncovered.Count == 0) return (true, $"ready: every expert held by an available node ({coverage.AvailableNodes} nodes)");
        var missing = string.Join(", ", coverage.Uncovered.Take(8).Select(u => $"layer {u.Layer} expert {u.Expert}"));
        return (false, $"not ready: {coverage.Uncovered.Count} experts have no available node ({missing}{(coverage.Uncovered.Count > 8 ? ", ..." : "")})");
    }

    /// <summary>Turns refusals into OpenAI-shaped errors; nothing else escapes as a stack trace.</summary>
    internal static async Task Guard(HttpContext ctx, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (ApiException e) when (!ctx.Response.HasStarted)
        {
            if (e.Status == 429) ctx.Response.Headers.RetryAfter = "1";
            ctx.RequestServices.GetRequiredService<Metrics.GatewayMetrics>().Rejected.WithLabels(e.Status.ToString()).Inc();
            await OpenAiErrors.From(e).ExecuteAsync(ctx);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // Client disconnected.
        }
    }

    public static void CheckModel(RequestReader r, ModelHost host)
    {
        var model = r.String("model");
        if (model is not null && model != host.Name)
            throw new ApiException(404, $"The model '{model}' does not exist; this server serves '{host.Name}'", "model", code: "model_not_found");
    }

    /// <summary>The tokenizer's ids for text a request sent in <paramref name="param"/>; text that is not Unicode is a 400.</summary>
    public static List<int> Encode(ModelHost host, string text, string param, IReadOnlyList<(int Start, int Length)>? plain = null)
    {
        try
        {
            return host.Tokenizer.Encode(text, plain);
        }
        catch (NotTextException e)
        {
            throw ApiException.BadRequest($"'{param}' {e.Message}", param);
        }
    }

    public static void CheckLength(int promptTokens, int maxTokens, ModelHost host, string param)
    {
        var limit = host.Engine.MaxModelLength;
        if (promptTokens >= limit)
            throw ApiException.BadRequest($"the prompt has {promptTokens} tokens; this model's maximum context length is {limit} tokens", param);
        if ((long)promptTokens + maxTokens > limit)
            throw ApiException.BadRequest($"the prompt ({promptTokens} tokens) plus max_tokens ({maxTokens}) exceeds the maximum context length of {limit} tokens", "max_tokens");
    }
}
