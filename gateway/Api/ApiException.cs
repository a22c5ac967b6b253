namespace MoeMesh.Gateway.Api;

/// <summary>A request the API refuses, rendered as an OpenAI-shaped error.</summary>
public sealed class ApiException(int status, string message, string? param = null, string type = "invalid_request_error", string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Type { get; } = type;
    public string? Code { get; } = code;

    public static ApiException BadRequest(string message, string? param = null) => new(400, message, param);
}
