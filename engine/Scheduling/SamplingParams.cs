namespace MoeMesh.Engine.Scheduling;

/// <summary>How to pick each next token and when to stop.</summary>
public sealed record SamplingParams
{
    public int MaxTokens { get; init; } = 16;

    /// <summary>0 means greedy.</summary>
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;

    /// <summary>0 or less means no top-k cut.</summary>
    public int TopK { get; init; }
    public long? Seed { get; init; }

    /// <summary>How many top alternatives to report per generated token; null for none.</summary>
    public int? Logprobs { get; init; }

    /// <summary>Top alternatives per prompt token (for echo); null for none.</summary>
    public int? PromptLogprobs { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    public bool IgnoreEos { get; init; }

    /// <summary>Subtracted once from the logit of every token already generated (OpenAI presence_penalty).</summary>
    public double PresencePenalty { get; init; }

    /// <summary>Subtracted per generation of a token from its logit (OpenAI frequency_penalty).</summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>Divides positive, multiplies negative logits of tokens in the prompt or output; 1 is off (vLLM's repetition_penalty).</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>Added to the logits of the given token ids (OpenAI logit_bias).</summary>
    public IReadOnlyDictionary<int, double> LogitBias { get; init; } = new Dictionary<int, double>();

    /// <summary>The language the output must stay in (response_format json_object); null for none.</summary>
    public Sampling.Grammar.OutputGrammar? Grammar { get; init; }

    /// <summary>Whether the penalties need the sequence's token history.</summary>
    public bool PenalisesTokens => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1.0;

    /// <summary>Whether picking a token needs more than the raw logits.</summary>
    public bool AdjustsLogits => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1.0 || LogitBias.Count > 0;
}
