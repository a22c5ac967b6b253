namespace MoeMesh.Gateway.Api;

/// <summary>Writes errors as OpenAI does: {"error":{"message","type","param","code"}}.</summary>
public static class OpenAiErrors
{
    public static IResult Result(int status, string message, string type, string? param = null, string? code = null) =>
        Results.Json(new { error = new { message, type, param, code } }, statusCode: status);

    public static IResult From(ApiException e) => Result(e.Status, e.Message, e.Type, e.Param, e.Code);

    public static Task Write(HttpContext context, int status, string message, string type, string? code = null)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new { error = new { message, type, param = (string?)null, code } });
    }
}
