using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Gateway.Api;

/// <summary>The sampling and streaming fields common to completions and chat completions.</summary>
public sealed record SamplingRequest(SamplingParams Params, int N, bool Stream, bool IncludeUsage, bool TokensAsIds)
{
    public const int MaxN = 64;
    public const int MaxLogprobs = 20;

    /// <summary>Reads the fields; <paramref name="maxTokens"/> is the default when the request names none.</summary>
    public static SamplingRequest Parse(RequestReader r, int maxTokens, int? logprobs, int vocabSize)
    {
        foreach (var penalty in new[] { "presence_penalty", "frequency_penalty" })
        {
            if (r.Double(penalty, -2, 2) is { } p && p != 0) throw ApiException.BadRequest($"'{penalty}' is not supported", penalty);
        }
        var stopIds = r.Ints("stop_token_ids");
        if (stopIds.FirstOrDefault(t => t < 0 || t >= vocabSize, -1) is var bad and >= 0)
            throw ApiException.BadRequest($"stop token id {bad} is outside the vocabulary", "stop_token_ids");
        var includeUsage = false;
        if (r.Get("stream_options") is { } so)
        {
            if (so.ValueKind != System.Text.Json.JsonValueKind.Object) throw ApiException.BadRequest("'stream_options' must be an object", "stream_options");
            includeUsage = so.TryGetProperty("include_usage", out var iu) && iu.ValueKind == System.Text.Json.JsonValueKind.True;
        }
        r.String("user");
        var sampling = new SamplingParams
        {
            MaxTokens = maxTokens,
            Temperature = r.Double("temperature", 0, 2) ?? 1.0,
            TopP = r.Double("top_p", 0, 1, minExclusive: true) ?? 1.0,
            TopK = r.Int("top_k", -1) is { } k and > 0 ? k : 0,
            Seed = r.Long("seed"),
            Logprobs = logprobs,
            Stop = r.Strings("stop", 16),
            StopTokenIds = stopIds,
            IgnoreEos = r.Bool("ignore_eos") ?? false,
        };
        return new SamplingRequest(sampling, r.Int("n", 1, MaxN) ?? 1, r.Bool("stream") ?? false, includeUsage,
            r.Bool("return_tokens_as_token_ids") ?? false);
    }

    /// <summary>The params of choice <paramref name="index"/>: a seeded request gives each choice its own seed.</summary>
    public SamplingParams ForChoice(int index) =>
        Params.Seed is { } s && index > 0 ? Params with { Seed = s + index } : Params;
}
