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
/// attention's memory is bounded by the tile, not by the context. With <see cref="Fused"/> (the default on CUDA), a
/// prefill slice in the naive form whose per-head keys and values fit <see cref="KvBudget"/> attends in libtorch's
/// fused scaled-dot-product attention instead (flash or memory-efficient kernels, where the shapes allow them: the
/// scores are never materialised there).
/// </summary>
public readonly record struct AttentionPlan(AttentionMode Mode, int? TileTokens = null, bool Fused = false)
{
    /// <summary>Elements of per-head keys and values a fused slice may expand (heads x context x (key + value width)): 256M.</summary>
    public const long KvBudget = 1L << 28;

    /// <summary>The longest context a fused slice takes, for <paramref name="heads"/> heads of keys and values <paramref name="width"/> wide together.</summary>
    public long FusedContext(long heads, long width) => Fused ? KvBudget / Math.Max(1, heads * width) : 0;

    /// <summary>
    /// Scores one tile may hold (heads x queries x tile tokens): 4M floats, 16 MB, under glibc's largest threshold for
    /// mapping a block on its own (<see cref="Runtime.NativeHeap"/>), so that a tile's tensors reuse heap memory. At
    /// twice that, bench --profile read a 512-token chunk's attention over 2,048 context tokens at 230 ms, against 70.
    /// </summary>
    public const long ScoreBudget = 1L << 22;

    /// <summary>The smallest tile the budget may choose: below it, per-tile fixed costs dominate.</summary>
    public const int MinTile = 64;

    /// <summary>Context tokens per tile for <paramref name="rows"/> query rows of <paramref name="heads"/> heads each.</summary>
    public int Tile(long heads, long rows) =>
        TileTokens ?? (int)Math.Max(MinTile, Math.Min(int.MaxValue, ScoreBudget / Math.Max(1, heads * rows)));
}
