namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// Where a grammar stands after some bytes. Immutable: advancing gives a new state, so that the token mask search can
/// branch from one state over many tokens.
/// </summary>
public abstract class GrammarState
{
    /// <summary>The state after <paramref name="b"/>, or null where the byte leaves the language.</summary>
    public abstract GrammarState? Advance(byte b);

    /// <summary>Whether the output must end here: nothing can follow. The engine ends it with the token that got here.</summary>
    public abstract bool IsComplete { get; }

    /// <summary>
    /// Whether the output may end here though more could follow (a regular expression's \d+ after a digit): the
    /// end-of-sequence token is then allowed beside the grammar's tokens.
    /// </summary>
    public virtual bool MayEnd => false;

    /// <summary>Equal for states that accept the same continuations: token masks are cached under it.</summary>
    public abstract string Key { get; }

    /// <summary>
    /// Non-null inside a region whose bytes do not depend on the context around it (a JSON string): equal for states
    /// that accept the same bytes for as long as they stay inside, which they leave only through one of
    /// <see cref="RegionExits"/>. The tokens that stay inside are then found once per key, and only the tokens holding
    /// an exit byte are searched per state.
    /// </summary>
    public virtual string? RegionKey => null;

    /// <summary>The bytes through which the state can leave its region (a JSON string's closing quote).</summary>
    public virtual byte[] RegionExits => [];
}
