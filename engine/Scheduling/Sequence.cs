using MoeMesh.Engine.Sampling;

namespace MoeMesh.Engine.Scheduling;

/// <summary>One generation stream: its tokens, how many are in the KV cache, and its pages.</summary>
public sealed class Sequence
{
    private readonly List<int> _tokens;

    public long Id { get; }
    public int PromptLength { get; }
    public SamplingParams Params { get; }
    public Random Random { get; }

    /// <summary>Tokens whose latents are in the cache.</summary>
    public int ComputedTokens { get; internal set; }
    public List<int> BlockTable { get; } = [];

    /// <summary>Leading whole pages of the block table already published for prefix reuse, and the last one's hash.</summary>
    internal int PublishedPages { get; set; }
    internal UInt128 PrefixHash { get; set; } = Kv.PageHash.Root;
    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;
    public FinishReason? FinishReason { get; internal set; }
    public string? Error { get; internal set; }

    /// <summary>Log-probabilities of prompt tokens 1..n-1 (index 0 unused), when asked for.</summary>
    public TokenLogprob?[]? PromptLogprobs { get; }

    public Sequence(long id, IReadOnlyList<int> prompt, SamplingParams sampling)
    {
        if (prompt.Count == 0) throw new ArgumentException("a sequence needs at least one prompt token", nameof(prompt));
        Id = id;
        _tokens = [.. prompt];
        PromptLength = prompt.Count;
        Params = sampling;
        Random = sampling.Seed is { } seed ? new Random(unchecked((int)(seed ^ (seed >> 32)))) : new Random();
        if (sampling.PromptLogprobs is not null) PromptLogprobs = new TokenLogprob?[prompt.Count];
        if (sampling.PenalisesTokens) History = new TokenHistory(prompt);
        if (sampling.StopTokenIds.Count > 0) StopTokenIds = [.. sampling.StopTokenIds];
        Grammar = sampling.Grammar?.Start();
    }

    /// <summary>Where the output stands in its grammar (advanced a token at a time); null without one.</summary>
    internal Sampling.Grammar.GrammarState? Grammar { get; set; }

    /// <summary>The tokens the penalties look at; null when the request has none.</summary>
    public TokenHistory? History { get; }

    /// <summary>The request's stop token ids, for a constant-time check per token.</summary>
    internal HashSet<int>? StopTokenIds { get; }

    public IReadOnlyList<int> Tokens => _tokens;
    public int Length => _tokens.Count;
    public int OutputLength => _tokens.Count - PromptLength;
    public IEnumerable<int> OutputTokens => _tokens.Skip(PromptLength);
    public bool IsFinished => Status == SequenceStatus.Finished;

    internal void Append(int token)
    {
        _tokens.Add(token);
        History?.Add(token);
    }
}
