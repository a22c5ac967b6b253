using MoeMesh.Engine.Dispatch;

namespace MoeMesh.Gateway.Api;

/// <summary>Requires "Authorization: Bearer KEY" on /v1 and /admin routes when --api-key is set.</summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, BearerKey key)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        if ((ctx.Request.Path.StartsWithSegments("/v1") || ctx.Request.Path.StartsWithSegments("/admin"))
            && !key.Accepts(ctx.Request.Headers.Authorization.ToString()))
        {
            await OpenAiErrors.Write(ctx, 401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key");
            return;
        }
        await next(ctx);
    }
}
