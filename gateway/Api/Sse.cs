using System.Text.Json;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Api;

/// <summary>Server-sent events in OpenAI's shape: "data: {json}" records ending with "data: [DONE]".</summary>
public static class Sse
{
    /// <summary>Sends the headers at once: a client sees its stream accepted before the first token, which may take a while.</summary>
    public static Task StartAsync(HttpResponse response)
    {
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        return response.StartAsync();
    }

    public static async Task WriteAsync(HttpResponse response, object payload)
    {
        await response.WriteAsync("data: " + JsonSerializer.Serialize(payload) + "\n\n");
        await response.Body.FlushAsync();
    }

    private static Task DoneAsync(HttpResponse response) => response.WriteAsync("data: [DONE]\n\n");

    /// <summary>Ends a stream: the usage chunk when the client asked for it (stream_options.include_usage), then [DONE].</summary>
    public static async Task EndAsync(HttpResponse response, string id, string objectType, long created, string model, (int Prompt, int Completion)? usage)
    {
        if (usage is { } u)
            await WriteAsync(response, new { id, @object = objectType, created, model, choices = Array.Empty<object>(), usage = Usage(u.Prompt, u.Completion) });
        await DoneAsync(response);
    }

    /// <summary>An error after the stream started: OpenAI's error object as one event.</summary>
    public static Task ErrorAsync(HttpResponse response, GenerationEvent e) =>
        WriteAsync(response, new { error = new { message = e.Error, type = "server_error", param = (string?)null, code = e.Finish == FinishReason.Unavailable ? "experts_unavailable" : null } });

    /// <summary>The usage object of a response.</summary>
    public static object Usage(int promptTokens, int completionTokens) =>
        new { prompt_tokens = promptTokens, completion_tokens = completionTokens, total_tokens = promptTokens + completionTokens };
}
