using System.Runtime.InteropServices;
using System.IO.Hashing;

namespace MoeMesh.Engine.Kv;

/// <summary>
/// Hands out fixed-size pages of the latent KV cache. Pure bookkeeping: no tensors.
/// Full pages can be published under the hash of the token prefix they end (chained page by page,
/// verified against the page's own tokens on reuse), so that a later sequence starting with the same
/// tokens takes them instead of recomputing them (prefix caching). Pages are reference-counted; an
/// unreferenced published page stays cached until a reservation needs it, least recently used first.
/// </summary>
public sealed class BlockAllocator
{
    /// <summary>Hash of the empty prefix: the seed of the first page's hash.</summary>
    public const ulong RootHash = 0;

    private readonly Stack<int> _free;
    private readonly int[] _refs;
    private readonly PublishedPage?[] _published;
    private readonly Dictionary<ulong, int> _byHash = new();
    private readonly LinkedList<int> _evictable = new();
    private readonly LinkedListNode<int>?[] _evictableNode;

    private sealed record PublishedPage(ulong Hash, ulong ParentHash, int[] Tokens);

    public int PageCount { get; }
    public int PageSize { get; }

    /// <summary>Pages a reservation can take: never used, or cached but unreferenced.</summary>
    public int FreePages => _free.Count + _evictable.Count;
    public int UsedPages => PageCount - FreePages;

    /// <summary>Published pages, referenced or not.</summary>
    public int CachedPages => _byHash.Count;

    public BlockAllocator(int pageCount, int pageSize)
    {
        if (pageCount <= 0) throw new ArgumentOutOfRangeException(nameof(pageCount), "the KV cache needs at least one page");
        if (pageSize <= 0) throw new ArgumentOutOfRangeException(nameof(pageSize));
        PageCount = pageCount;
        PageSize = pageSize;
        _free = new Stack<int>(Enumerable.Range(0, pageCount).Reverse());
        _refs = new int[pageCount];
        _published = new PublishedPage?[pageCount];
        _evictableNode = new LinkedListNode<int>?[pageCount];
    }

    public int PagesFor(int tokens) => (tokens + PageSize - 1) / PageSize;

    /// <summary>Grows a block table to hold <paramref name="tokens"/> tokens; false (and no change) when pages run out.</summary>
    public bool TryReserve(List<int> blockTable, int tokens)
    {
        var needed = PagesFor(tokens) - blockTable.Count;
        if (needed <= 0) return true;
        if (needed > FreePages) return false;
        for (var i = 0; i < needed; i++) blockTable.Add(Take());
        return true;
    }

    /// <summary>Drops the table's references; a page nobody references is free again, or stays cached when published.</summary>
    public void Release(List<int> blockTable)
    {
        foreach (var page in blockTable)
        {
            if (--_refs[page] > 0) continue;
            if (_published[page] is not null) _evictableNode[page] = _evictable.AddLast(page);
            else _free.Push(page);
        }
        blockTable.Clear();
    }

    /// <summary>Cache slot of the token at <paramref name="position"/> of a sequence.</summary>
    public long Slot(IReadOnlyList<int> blockTable, int position) =>
        (long)blockTable[position / PageSize] * PageSize + position % PageSize;

    /// <summary>The hash of page <paramref name="page"/> of <paramref name="tokens"/>, chained on its parent's.</summary>
    public ulong PageHash(ulong parentHash, IReadOnlyList<int> tokens, int page)
    {
        Span<int> ids = stackalloc int[PageSize];
        for (var i = 0; i < PageSize; i++) ids[i] = tokens[page * PageSize + i];
        return XxHash64.HashToUInt64(MemoryMarshal.AsBytes(ids), unchecked((long)parentHash));
    }

    /// <summary>
    /// Appends to an empty block table the published pages that hold the longest prefix of
    /// <paramref name="tokens"/> in whole pages, at most <paramref name="maxTokens"/> tokens, and takes a
    /// reference on each. Returns the tokens covered and the hash of the last page taken.
    /// </summary>
    public (int Tokens, ulong Hash) TakePrefix(List<int> blockTable, IReadOnlyList<int> tokens, int maxTokens)
    {
        var parent = RootHash;
        var pages = 0;
        for (; (pages + 1) * PageSize <= maxTokens; pages++)
        {
            var hash = PageHash(parent, tokens, pages);
            if (!_byHash.TryGetValue(hash, out var page) || !Holds(_published[page]!, parent, tokens, pages)) break;
            if (_refs[page]++ == 0 && _evictableNode[page] is { } node)
            {
                _evictable.Remove(node);
                _evictableNode[page] = null;
            }
            blockTable.Add(page);
            parent = hash;
        }
        return (pages * PageSize, parent);
    }

    /// <summary>
    /// Publishes the whole pages of a block table from page <paramref name="fromPage"/> up to
    /// <paramref name="computedTokens"/>, chained on <paramref name="parentHash"/> (the hash of page
    /// fromPage-1). A page whose prefix is already published elsewhere stays private. Returns the number
    /// of whole pages covered and the last page's hash, for the next call.
    /// </summary>
    public (int Pages, ulong Hash) Publish(IReadOnlyList<int> blockTable, IReadOnlyList<int> tokens, int computedTokens, int fromPage, ulong parentHash)
    {
        var pages = fromPage;
        for (; (pages + 1) * PageSize <= computedTokens; pages++)
        {
            var hash = PageHash(parentHash, tokens, pages);
            var page = blockTable[pages];
            if (_published[page] is null && !_byHash.ContainsKey(hash))
            {
                var ids = new int[PageSize];
                for (var i = 0; i < PageSize; i++) ids[i] = tokens[pages * PageSize + i];
                _published[page] = new PublishedPage(hash, parentHash, ids);
                _byHash[hash] = page;
            }
            parentHash = hash;
        }
        return (pages, parentHash);
    }

    private bool Holds(PublishedPage p, ulong parentHash, IReadOnlyList<int> tokens, int page)
    {
        if (p.ParentHash != parentHash) return false;
        for (var i = 0; i < PageSize; i++)
            if (p.Tokens[i] != tokens[page * PageSize + i]) return false;
        return true;
    }

    /// <summary>A never-used page if any, else the least recently used cached one (forgotten now).</summary>
    private int Take()
    {
        int page;
        if (_free.Count > 0) page = _free.Pop();
        else
        {
            page = _evictable.First!.Value;
            _evictable.RemoveFirst();
            _evictableNode[page] = null;
            _byHash.Remove(_published[page]!.Hash);
            _published[page] = null;
        }
        _refs[page] = 1;
        return page;
    }
}
