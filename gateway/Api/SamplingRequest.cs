using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Gateway.Api;

/// <summary>The sampling and streaming fields common to completions and chat completions.</summary>
public sealed partial record SamplingRequest(SamplingParams Params, int N, bool Stream, bool IncludeUsage, bool TokensAsIds)
{
    public const int MaxN = 64;
    public const int MaxLogprobs = 20;
    public const int MaxStops = 16;
    public const int MaxStopLength = 256;
    public const int MaxStopTokenIds = 256;

    /// <summary>OpenAI's own cap on logit_bias entries.</summary>
    public const int MaxLogitBias = 300;

    /// <summary>Reads the fields; <paramref name="maxTokens"/> is the default when the request names none.</summary>
    public static SamplingRequest Parse(RequestReader r, int maxTokens, int? logprobs, int vocabSize)
    {
        var stopIds = r.Ints("stop_token_ids", MaxStopTokenIds);
        if (stopIds.FirstOrDefault(t => t < 0 || t >= vocabSize, -1) is var bad and >= 0)
            throw ApiException.BadRequest($"stop token id {bad} is outside the vocabulary", "stop_token_ids");
        var includeUsage = false;
        if (r.Get("stream_options") is { } so)
        {
            if (so.ValueKind != System.Text.Json.JsonValueKind.Object) throw ApiException.BadRequest("'stream_options' must be an object", "stream_options");
            foreach (var option in so.EnumerateObject())
            {
                if (option.Name != "include_usage") throw ApiException.BadRequest($"'stream_options.{option.Name}' is not supported (only include_usage)", "stream_options");
                if (option.Value.ValueKind is not (System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False or System.Text.Json.JsonValueKind.Null))
                    throw ApiException.BadRequest("'stream_options.include_usage' must be a boolean", "stream_options");
                includeUsage = option.Value.ValueKind == System.Text.Json.JsonValueKind.True;
            }
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
            Stop = r.Strings("stop", MaxStops, MaxStopLength),
            StopTokenIds = stopIds,
            IgnoreEos = r.Bool("ignore_eos") ?? false,
            PresencePenalty = r.Double("presence_penalty", -2, 2) ?? 0,
            FrequencyPenalty = r.Double("frequency_penalty", -2, 2) ?? 0,
            RepetitionPenalty = r.Double("repetition_penalty", 0, 10, minExclusive: true) ?? 1.0,
            LogitBias = LogitBias(r, vocabSize),
            Grammar = Grammar(r),
        };
        return new SamplingRequest(sampling, r.Int("n", 1, MaxN) ?? 1, r.Bool("stream") ?? false, includeUsage,
            r.Bool("return_tokens_as_token_ids") ?? false);
    }

    /// <summary>The output's constraint: response_format, or vLLM's guided_choice or guided_regex; at most one.</summary>
    private static MoeMesh.Engine.Sampling.Grammar.OutputGrammar? Grammar(RequestReader r)
    {
        var format = ResponseFormat(r);
        var choices = r.Strings("guided_choice", MoeMesh.Engine.Sampling.Grammar.ChoiceGrammar.MaxChoices, MoeMesh.Engine.Sampling.Grammar.ChoiceGrammar.MaxChoiceBytes);
        if (choices.Count == 0 && r.Get("guided_choice") is { ValueKind: System.Text.Json.JsonValueKind.Array }) throw ApiException.BadRequest("'guided_choice' is empty", "guided_choice");
        var regex = r.String("guided_regex");
        var given = new[] { (format is not null, "response_format"), (choices.Count > 0, "guided_choice"), (regex is not null, "guided_regex") }.Where(g => g.Item1).Select(g => g.Item2).ToArray();
        if (given.Length > 1) throw ApiException.BadRequest($"give one of 'response_format', 'guided_choice' and 'guided_regex', not {string.Join(" and ", given.Select(g => $"'{g}'"))}", given[1]);
        try
        {
            if (choices.Count > 0) return new MoeMesh.Engine.Sampling.Grammar.ChoiceGrammar(choices);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest($"'guided_choice': {e.Message}", "guided_choice");
        }
        if (regex is null) return format;
        if (regex.Length > MoeMesh.Engine.Sampling.Grammar.Pattern.MaxLength) throw ApiException.BadRequest($"'guided_regex' is longer than {MoeMesh.Engine.Sampling.Grammar.Pattern.MaxLength} characters", "guided_regex");
        try
        {
            return MoeMesh.Engine.Sampling.Grammar.RegexGrammar.For(regex);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest($"'guided_regex': {e.Message}", "guided_regex");
        }
    }

    /// <summary>
    /// response_format: "text" (the default); "json_object", which constrains the output to one JSON object; or
    /// "json_schema" {"name", "description", "schema", "strict"}, which constrains it to a JSON value of the schema
    /// (always enforced, strict or not). A schema keyword the compiler does not support is a 400 that names it.
    /// </summary>
    private static MoeMesh.Engine.Sampling.Grammar.OutputGrammar? ResponseFormat(RequestReader r)
    {
        const string name = "response_format";
        if (r.Get(name) is not { } format || format.ValueKind == System.Text.Json.JsonValueKind.Null) return null;
        var type = format.ValueKind == System.Text.Json.JsonValueKind.Object && format.TryGetProperty("type", out var t) && t.ValueKind == System.Text.Json.JsonValueKind.String
            ? t.GetString() : throw ApiException.BadRequest("'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}", name);
        foreach (var field in format.EnumerateObject())
            if (field.Name != "type" && !(type == "json_schema" && field.Name == "json_schema"))
                throw ApiException.BadRequest($"'response_format.{field.Name}' is not a field of response_format {type}", name);
        return type switch
        {
            "text" => null,
            "json_object" => MoeMesh.Engine.Sampling.Grammar.JsonObjectGrammar.Instance,
            "json_schema" => JsonSchema(format),
            _ => throw ApiException.BadRequest($"response_format type '{type}' is not one of text, json_object, json_schema", name),
        };
    }

    private static MoeMesh.Engine.Sampling.Grammar.OutputGrammar JsonSchema(System.Text.Json.JsonElement format)
    {
        const string name = "response_format";
        if (!format.TryGetProperty("json_schema", out var js) || js.ValueKind != System.Text.Json.JsonValueKind.Object)
            throw ApiException.BadRequest("response_format json_schema needs 'json_schema': {\"name\": ..., \"schema\": {...}}", name);
        foreach (var field in js.EnumerateObject())
        {
            var ok = field.Name switch
            {
                "name" => field.Value.ValueKind == System.Text.Json.JsonValueKind.String && SchemaName().IsMatch(field.Value.GetString()!),
                "description" => field.Value.ValueKind is System.Text.Json.JsonValueKind.String or System.Text.Json.JsonValueKind.Null,
                "strict" => field.Value.ValueKind is System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False or System.Text.Json.JsonValueKind.Null,
                "schema" => field.Value.ValueKind == System.Text.Json.JsonValueKind.Object,
                _ => throw ApiException.BadRequest($"'response_format.json_schema.{field.Name}' is not a field of json_schema (name, description, schema, strict)", name),
            };
            if (!ok) throw ApiException.BadRequest(field.Name switch
            {
                "name" => "'response_format.json_schema.name' must be 1 to 64 letters, digits, underscores or dashes",
                "schema" => "'response_format.json_schema.schema' must be a JSON Schema object",
                _ => $"'response_format.json_schema.{field.Name}' has the wrong type",
            }, name);
        }
        if (!js.TryGetProperty("schema", out var schema)) throw ApiException.BadRequest("'response_format.json_schema' needs 'schema'", name);
        try
        {
            return new MoeMesh.Engine.Sampling.Grammar.SchemaGrammar(MoeMesh.Engine.Sampling.Grammar.JsonSchemaCompiler.Compile(schema));
        }
        catch (MoeMesh.Engine.Sampling.Grammar.SchemaGrammarException e)
        {
            throw new ApiException(400, $"response_format json_schema: {e.Message}", name, code: "unsupported_parameter");
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest($"response_format json_schema: {e.Message}", name);
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial System.Text.RegularExpressions.Regex SchemaName();

    /// <summary>logit_bias: {"token id": bias in [-100, 100], ...}, as OpenAI takes it.</summary>
    private static Dictionary<int, double> LogitBias(RequestReader r, int vocabSize)
    {
        const string name = "logit_bias";
        var bias = new Dictionary<int, double>();
        if (r.Get(name) is not { } v) return bias;
        if (v.ValueKind != System.Text.Json.JsonValueKind.Object) throw ApiException.BadRequest($"'{name}' must be an object mapping token ids to biases", name);
        if (v.EnumerateObject().Count() > MaxLogitBias) throw ApiException.BadRequest($"'{name}' holds at most {MaxLogitBias} entries", name);
        foreach (var entry in v.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var token) || token >= vocabSize)
                throw ApiException.BadRequest($"'{name}' key '{entry.Name}' is not a token id of the vocabulary (0..{vocabSize - 1})", name);
            if (entry.Value.ValueKind != System.Text.Json.JsonValueKind.Number || !entry.Value.TryGetDouble(out var value) || value is < -100 or > 100 or double.NaN)
                throw ApiException.BadRequest($"'{name}' value for token {token} must be a number between -100 and 100", name);
            bias[token] = value;
        }
        return bias;
    }

    /// <summary>The params of choice <paramref name="index"/>: a seeded request gives each choice its own seed.</summary>
    public SamplingParams ForChoice(int index) =>
        Params.Seed is { } s && index > 0 ? Params with { Seed = s + index } : Params;
}
