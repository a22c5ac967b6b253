using System.Security.Cryptography;
using System.Text;

namespace MoeMesh.Gateway.Api;

/// <summary>Requires "Authorization: Bearer KEY" on /v1 and /admin routes when --api-key is set.</summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, string apiKey)
{
    private readonly byte[] _key = Encoding.UTF8.GetBytes(apiKey);

    public async Task InvokeAsync(HttpContext ctx)
    {
        if (ctx.Request.Path.StartsWithSegments("/v1") || ctx.Request.Path.StartsWithSegments("/admin"))
        {
            var header = ctx.Request.Headers.Authorization.ToString();
            var given = header.StartsWith("Bearer ", StringComparison.Ordinal) ? Encoding.UTF8.GetBytes(header[7..].Trim()) : [];
            if (!CryptographicOperations.FixedTimeEquals(given, _key))
            {
                await OpenAiErrors.Write(ctx, 401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key");
                return;
            }
        }
        await next(ctx);
    }
}
