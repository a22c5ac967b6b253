using MoeMesh.Engine.Kv;

namespace MoeMesh.Engine.Scheduling;

/// <summary>
/// Continuous batching with chunked prefill: each step, running sequences get their next token
/// (or their next prefill chunk) first, then waiting ones are admitted while the token budget and the
/// cache allow. When pages run out, the most recently admitted sequence is preempted (its pages freed,
/// recomputed later). With prefix caching, an admitted sequence first takes the cached pages of its
/// longest known prefix and computes only the rest; computed whole pages are published for later ones.
/// No tensors here.
/// </summary>
public sealed class Scheduler(BlockAllocator allocator, int maxBatchTokens, int maxRunning, bool prefixCaching = false)
{
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];

    public int WaitingCount => _waiting.Count;
    public int RunningCount => _running.Count;
    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;
    public BlockAllocator Allocator => allocator;

    /// <summary>Tokens looked up in the prefix cache on admission, and how many of them were found.</summary>
    public long PrefixQueryTokens { get; private set; }
    public long PrefixHitTokens { get; private set; }

    /// <summary>Largest sequence the cache can ever hold on its own.</summary>
    public int MaxSequenceTokens => allocator.PageCount * allocator.PageSize;

    public void Add(Sequence sequence)
    {
        sequence.Status = SequenceStatus.Waiting;
        _waiting.AddLast(sequence);
    }

    public IReadOnlyList<ScheduledChunk> Schedule()
    {
        var chunks = new List<ScheduledChunk>();
        var budget = maxBatchTokens;
        var preempted = false;
        // Hashes of the whole pages this step completes: a sequence that needs one of them next waits a step
        // and takes it from the cache (n choices of one prompt, a burst of requests with one system prompt).
        var computing = prefixCaching ? new HashSet<UInt128>() : null;
        for (var i = 0; i < _running.Count && budget > 0; i++)
        {
            var seq = _running[i];
            var take = Math.Min(seq.Length - seq.ComputedTokens, budget);
            while (!allocator.TryReserve(seq.BlockTable, seq.ComputedTokens + take))
            {
                // The newest running sequence gives way; a sequence alone always fits (checked on admission).
                Preempt(_running[^1]);
                preempted = true;
                if (_running.Count <= i) break;
            }
            if (seq.Status != SequenceStatus.Running) break;
            chunks.Add(new ScheduledChunk(seq, seq.ComputedTokens, take));
            NoteCompletedPages(computing, seq, take);
            budget -= take;
        }
        for (var node = _waiting.First; !preempted && budget > 0 && _running.Count < maxRunning && node is not null;)
        {
            var next = node.Next;
            var seq = node.Value;
            var reused = TakeCachedPrefix(seq);
            if (reused && computing is not null && NextPageHash(seq) is { } wanted && computing.Contains(wanted))
            {
                Forget(seq);
                node = next;
                continue;
            }
            var take = Math.Min(seq.Length - seq.ComputedTokens, budget);
            if (!allocator.TryReserve(seq.BlockTable, seq.ComputedTokens + take))
            {
                if (reused) Forget(seq);
                break;
            }
            if (reused) CountLookup(seq);
            _waiting.Remove(node);
            seq.Status = SequenceStatus.Running;
            _running.Add(seq);
            chunks.Add(new ScheduledChunk(seq, seq.ComputedTokens, take));
            NoteCompletedPages(computing, seq, take);
            budget -= take;
            node = next;
        }
        return chunks;
    }

    /// <summary>Adds the hashes of the whole pages a chunk of <paramref name="take"/> tokens completes.</summary>
    private void NoteCompletedPages(HashSet<UInt128>? computing, Sequence seq, int take)
    {
        if (computing is null) return;
        var hash = seq.PrefixHash;
        for (var page = seq.PublishedPages; (page + 1) * allocator.PageSize <= seq.ComputedTokens + take; page++)
        {
            hash = allocator.PageHash(hash, seq.Tokens, page);
            computing.Add(hash);
        }
    }

    /// <summary>The hash of the page a sequence would compute next, when it could still come from the cache (not its last token's).</summary>
    private UInt128? NextPageHash(Sequence seq)
    {
        var page = seq.PublishedPages;
        return (page + 1) * allocator.PageSize <= seq.Length - 1 ? allocator.PageHash(seq.PrefixHash, seq.Tokens, page) : null;
    }

    /// <summary>
    /// Called once a step has computed a sequence's tokens: its new whole pages become reusable (and are added
    /// to <paramref name="published"/> when given).
    /// </summary>
    public void Computed(Sequence seq, List<CachedPage>? published = null)
    {
        if (!prefixCaching) return;
        (seq.PublishedPages, seq.PrefixHash) = allocator.Publish(seq.BlockTable, seq.Tokens, seq.ComputedTokens, seq.PublishedPages, seq.PrefixHash, published);
    }

    /// <summary>
    /// A sequence starting from scratch takes the cached pages of its prefix (at most all but its last
    /// token, whose logits must be computed). Prompt log-probabilities need every prompt position's logits,
    /// so such sequences compute everything.
    /// </summary>
    private bool TakeCachedPrefix(Sequence seq)
    {
        if (!prefixCaching || seq.ComputedTokens != 0 || seq.PromptLogprobs is not null) return false;
        var (tokens, hash) = allocator.TakePrefix(seq.BlockTable, seq.Tokens, seq.Length - 1);
        seq.ComputedTokens = tokens;
        seq.PublishedPages = tokens / allocator.PageSize;
        seq.PrefixHash = hash;
        return true;
    }

    private void CountLookup(Sequence seq)
    {
        PrefixQueryTokens += seq.Length - 1;
        PrefixHitTokens += seq.ComputedTokens;
    }

    /// <summary>Ends a sequence wherever it is and frees its pages.</summary>
    public void Finish(Sequence seq, FinishReason reason, string? error = null)
    {
        if (seq.IsFinished) return;
        if (seq.Status == SequenceStatus.Waiting) _waiting.Remove(seq);
        else _running.Remove(seq);
        Forget(seq);
        seq.Status = SequenceStatus.Finished;
        seq.FinishReason = reason;
        seq.Error = error;
    }

    private void Preempt(Sequence seq)
    {
        _running.Remove(seq);
        Forget(seq);
        seq.Status = SequenceStatus.Waiting;
        _waiting.AddFirst(seq);
    }

    /// <summary>Drops a sequence's pages: it has nothing computed any more.</summary>
    private void Forget(Sequence seq)
    {
        allocator.Release(seq.BlockTable);
        seq.ComputedTokens = 0;
        seq.PublishedPages = 0;
        seq.PrefixHash = PageHash.Root;
    }
}
