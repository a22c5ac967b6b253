namespace MoeMesh.Engine.Kv;

/// <summary>Hands out fixed-size pages of the latent KV cache. Pure bookkeeping: no tensors.</summary>
public sealed class BlockAllocator
{
    private readonly Stack<int> _free;

    public int PageCount { get; }
    public int PageSize { get; }
    public int FreePages => _free.Count;
    public int UsedPages => PageCount - _free.Count;

    public BlockAllocator(int pageCount, int pageSize)
    {
        if (pageCount <= 0) throw new ArgumentOutOfRangeException(nameof(pageCount), "the KV cache needs at least one page");
        if (pageSize <= 0) throw new ArgumentOutOfRangeException(nameof(pageSize));
        PageCount = pageCount;
        PageSize = pageSize;
        _free = new Stack<int>(Enumerable.Range(0, pageCount).Reverse());
    }

    public int PagesFor(int tokens) => (tokens + PageSize - 1) / PageSize;

    /// <summary>Grows a block table to hold <paramref name="tokens"/> tokens; false (and no change) when pages run out.</summary>
    public bool TryReserve(List<int> blockTable, int tokens)
    {
        var needed = PagesFor(tokens) - blockTable.Count;
        if (needed <= 0) return true;
        if (needed > _free.Count) return false;
        for (var i = 0; i < needed; i++) blockTable.Add(_free.Pop());
        return true;
    }

    public void Release(List<int> blockTable)
    {
        foreach (var page in blockTable) _free.Push(page);
        blockTable.Clear();
    }

    /// <summary>Cache slot of the token at <paramref name="position"/> of a sequence.</summary>
    public long Slot(IReadOnlyList<int> blockTable, int position) =>
        (long)blockTable[position / PageSize] * PageSize + position % PageSize;
}
