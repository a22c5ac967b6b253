using MoeMesh.Engine.Dispatch;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// Requires "Authorization: Bearer KEY" on a path prefix: --api-key on /v1 (the inference API) and vLLM's /tokenize
/// and /detokenize, --admin-api-key on /admin (operator routes). A key opens nothing but its prefixes.
/// </summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, PathString prefix, BearerKey key)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        if (ctx.Request.Path.StartsWithSegments(prefix) && !key.Accepts(ctx.Request.Headers.Authorization.ToString()))
        {
            await OpenAiErrors.Write(ctx, 401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key");
            return;
        }
        await next(ctx);
    }
}
