namespace MoeMesh.Engine.Model;

/// <summary>
/// Which MLA form to use. Auto takes, for each slice of new tokens, the form that costs fewer multiply-adds
/// (<see cref="MlaAttention.NaiveIsCheaper"/>): the naive form for long prefill chunks, the absorbed form for decode.
/// </summary>
public enum AttentionMode
{
    Auto,
    Naive,
    Absorbed,
}

/// <summary>
/// How attention runs in one step. The context is read in tiles of at most <see cref="TileTokens"/> tokens (by
/// default as many as keep a tile's scores within <see cref="ScoreBudget"/> elements) with an online softmax, so
/// attention's memory is bounded by the tile, not by the context.
/// </summary>
public readonly record struct AttentionPlan(AttentionMode Mode, int? TileTokens = null)
{
    /// <summary>Scores one tile may hold (heads x queries x tile tokens): 8M floats, 32 MB.</summary>
    public const long ScoreBudget = 1L << 23;

    /// <summary>The smallest tile the budget may choose: below it, per-tile fixed costs dominate.</summary>
    public const int MinTile = 64;

    /// <summary>Context tokens per tile for <paramref name="rows"/> query rows of <paramref name="heads"/> heads each.</summary>
    public int Tile(long heads, long rows) =>
        TileTokens ?? (int)Math.Max(MinTile, Math.Min(int.MaxValue, ScoreBudget / Math.Max(1, heads * rows)));
}
