namespace MoeMesh.Engine.Sampling;

/// <summary>
/// What the penalties need to know of a sequence's tokens, kept up to date as tokens are generated so that
/// no step rescans the sequence: the distinct tokens seen (prompt and output) and how often each was generated.
/// </summary>
public sealed class TokenHistory
{
    private readonly HashSet<int> _seen;
    private readonly Dictionary<int, int> _generated = new();

    public TokenHistory(IEnumerable<int> prompt) => _seen = [.. prompt];

    /// <summary>Distinct tokens of the prompt and the output.</summary>
    public IReadOnlySet<int> Seen => _seen;

    /// <summary>Generated tokens and their counts.</summary>
    public IReadOnlyDictionary<int, int> Generated => _generated;

    public void Add(int token)
    {
        _seen.Add(token);
        _generated[token] = _generated.GetValueOrDefault(token) + 1;
    }
}
