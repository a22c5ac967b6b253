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
}
