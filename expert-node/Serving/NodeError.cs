namespace MoeMesh.ExpertNode.Serving;

/// <summary>The node's refusals, in the same OpenAI-shaped JSON as the gateway's: {"error":{"message","type","param","code"}}.</summary>
public static class NodeError
{
    public static IResult Result(int status, string code, string message, string type = "dispatch_error", string? param = null) =>
        Results.Json(new { error = new { message, type, param, code } }, statusCode: status);
}
