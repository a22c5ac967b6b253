using System.Collections.Concurrent;

namespace MoeMesh.Engine.Kv;

/// <summary>
/// Hands out fixed-size pages of the latent KV cache. Pure bookkeeping: no tensors.
/// Full pages can be published under the hash of the token prefix they end (<see cref="Kv.PageHash"/>,
/// verified against the page's own tokens on reuse), so that a later sequence starting with the same
/// tokens takes them instead of recomputing them (prefix caching). Pages are reference-counted; an
/// unreferenced published page stays cached until a reservation needs it, least recently used first.
/// One thread owns it; only <see cref="CachedPrefixPages"/> may be called from others.
/// </summary>
public sealed class BlockAllocator
{
    private readonly Stack<int> _free;
    private readonly int[] _refs;
    private readonly PublishedPage?[] _published;
    // Concurrent only so that CachedPrefixPages can read it from a request thread.
    private readonly ConcurrentDictionary<UInt128, int> _byHash = new();
    private readonly LinkedList<int> _evictable = new();
    private readonly LinkedListNode<int>?[] _evictableNode;

    private sealed record PublishedPage(UInt128 Hash, UInt128 ParentHash, int[] Tokens);

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
    public UInt128 PageHash(UInt128 parentHash, IReadOnlyList<int> tokens, int page) => Kv.PageHash.Of(parentHash, tokens, page, PageSize);

    /// <summary>
    /// How many leading whole pages of <paramref name="tokens"/> (within <paramref name="maxTokens"/>) are
    /// published now, judged by their hashes alone. Safe from any thread; a hint, since the owner may evict
    /// or publish pages meanwhile.
    /// </summary>
    public int CachedPrefixPages(IReadOnlyList<int> tokens, int maxTokens)
    {
        var parent = Kv.PageHash.Root;
        var pages = 0;
        for (; (pages + 1) * PageSize <= maxTokens; pages++)
        {
            parent = PageHash(parent, tokens, pages);
            if (!_byHash.ContainsKey(parent)) break;
        }
        return pages;
    }

    /// <summary>
    /// Appends to an empty block table the published pages that hold the longest prefix of
    /// <paramref name="tokens"/> in whole pages, at most <paramref name="maxTokens"/> tokens, and takes a
    /// reference on each. Returns the tokens covered and the hash of the last page taken.
    /// </summary>
    public (int Tokens, UInt128 Hash) TakePrefix(List<int> blockTable, IReadOnlyList<int> tokens, int maxTokens)
    {
        var parent = Kv.PageHash.Root;
        var pages = 0;
        for (; (pages + 1) * PageSize <= maxTokens; pages++)
        {
            var hash = PageHash(parent, tokens, pages);
            if (Find(hash, parent, tokens, pages) is not { } page) break;
            Reference(page);
            blockTable.Add(page);
            parent = hash;
        }
        return (pages * PageSize, parent);
    }

    /// <summary>
    /// Publishes the whole pages of a block table from page <paramref name="fromPage"/> up to
    /// <paramref name="computedTokens"/>, chained on <paramref name="parentHash"/> (the hash of page
    /// fromPage-1). A page whose prefix is already published elsewhere stays private. Each page published
    /// now is added to <paramref name="published"/> when given. Returns the number of whole pages covered
    /// and the last page's hash, for the next call.
    /// </summary>
    public (int Pages, UInt128 Hash) Publish(IReadOnlyList<int> blockTable, IReadOnlyList<int> tokens, int computedTokens, int fromPage, UInt128 parentHash,
        List<CachedPage>? published = null)
    {
        var pages = fromPage;
        for (; (pages + 1) * PageSize <= computedTokens; pages++)
        {
            var hash = PageHash(parentHash, tokens, pages);
            var page = blockTable[pages];
            if (_published[page] is null && !_byHash.ContainsKey(hash))
            {
                var entry = PublishAs(page, hash, parentHash, tokens, pages);
                published?.Add(new CachedPage(page, entry.Hash, entry.ParentHash, entry.Tokens));
            }
            parentHash = hash;
        }
        return (pages, parentHash);
    }

    /// <summary>
    /// Publishes pages whose contents come from elsewhere (a shared store): pages <paramref name="firstPage"/>
    /// onwards of <paramref name="tokens"/>, <paramref name="count"/> at most. <paramref name="fill"/> writes
    /// the i-th page's contents into the cache page it is given. Imports only onto a prefix published here
    /// (pages 0..firstPage-1), skips pages already published, stops when no page can be taken. Returns how
    /// many pages of the range are published afterwards (imported or already there).
    /// </summary>
    public int Import(IReadOnlyList<int> tokens, int firstPage, int count, Action<int, int> fill)
    {
        var held = new List<int>();
        try
        {
            // Holding the prefix keeps the imports from evicting the pages they chain on.
            var (covered, parent) = TakePrefix(held, tokens, firstPage * PageSize);
            if (covered < firstPage * PageSize) return 0;
            var done = 0;
            for (; done < count && FreePages > 0; done++)
            {
                var index = firstPage + done;
                var hash = PageHash(parent, tokens, index);
                if (Find(hash, parent, tokens, index) is { } existing)
                {
                    Reference(existing);
                    held.Add(existing);
                }
                else
                {
                    var page = Take();
                    held.Add(page);
                    fill(page, done);
                    PublishAs(page, hash, parent, tokens, index);
                }
                parent = hash;
            }
            return done;
        }
        finally
        {
            Release(held);
        }
    }

    private PublishedPage PublishAs(int page, UInt128 hash, UInt128 parentHash, IReadOnlyList<int> tokens, int index)
    {
        var ids = new int[PageSize];
        for (var i = 0; i < PageSize; i++) ids[i] = tokens[index * PageSize + i];
        var entry = new PublishedPage(hash, parentHash, ids);
        _published[page] = entry;
        _byHash[hash] = page;
        return entry;
    }

    /// <summary>The published page under <paramref name="hash"/>, when it really holds that page of the tokens.</summary>
    private int? Find(UInt128 hash, UInt128 parentHash, IReadOnlyList<int> tokens, int index)
    {
        if (!_byHash.TryGetValue(hash, out var page)) return null;
        var p = _published[page]!;
        if (p.ParentHash != parentHash) return null;
        for (var i = 0; i < PageSize; i++)
            if (p.Tokens[i] != tokens[index * PageSize + i]) return null;
        return page;
    }

    private void Reference(int page)
    {
        if (_refs[page]++ == 0 && _evictableNode[page] is { } node)
        {
            _evictable.Remove(node);
            _evictableNode[page] = null;
        }
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
            _byHash.TryRemove(_published[page]!.Hash, out _);
            _published[page] = null;
        }
        _refs[page] = 1;
        return page;
    }
}
