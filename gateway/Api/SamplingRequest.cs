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
            PresencePenalty = r.Double("presence_penalty", -2, 2) ?? 0,
            FrequencyPenalty = r.Double("frequency_penalty", -2, 2) ?? 0,
            RepetitionPenalty = r.Double("repetition_penalty", 0, 10, minExclusive: true) ?? 1.0,
            LogitBias = LogitBias(r, vocabSize),
        };
        return new SamplingRequest(sampling, r.Int("n", 1, MaxN) ?? 1, r.Bool("stream") ?? false, includeUsage,
            r.Bool("return_tokens_as_token_ids") ?? false);
    }

    /// <summary>logit_bias: {"token id": bias in [-100, 100], ...}, as OpenAI takes it.</summary>
    private static Dictionary<int, double> LogitBias(RequestReader r, int vocabSize)
    {
        const string name = "logit_bias";
        var bias = new Dictionary<int, double>();
        if (r.Get(name) is not { } v) return bias;
        if (v.ValueKind != System.Text.Json.JsonValueKind.Object) throw ApiException.BadRequest($"'{name}' must be an object mapping token ids to biases", name);
        foreach (var entry in v.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var token) || token >= vocabSize)
                throw ApiException.BadRequest($"'{name}' key '{entry.Name}' is not a token id of the vocabulary (0..{vocabSize - 1})", name);
            if (entry.Value.ValueKind != System.Text.Json.JsonValueKind.Number || entry.Value.GetDouble() is < -100 or > 100)
                throw ApiException.BadRequest($"'{name}' value for token {token} must be a number between -100 and 100", name);
            bias[token] = entry.Value.GetDouble();
        }
        return bias;
    }

    /// <summary>The params of choice <paramref name="index"/>: a seeded request gives each choice its own seed.</summary>
    public SamplingParams ForChoice(int index) =>
        Params.Seed is { } s && index > 0 ? Params with { Seed = s + index } : Params;
}
