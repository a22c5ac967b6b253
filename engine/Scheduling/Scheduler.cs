using MoeMesh.Engine.Kv;

namespace MoeMesh.Engine.Scheduling;

/// <summary>
/// Continuous batching with chunked prefill: each step, running sequences get their next token
/// (or their next prefill chunk) first, then waiting ones are admitted while the token budget and the
/// cache allow. When pages run out, the most recently admitted sequence is preempted (its pages freed,
/// recomputed later). No tensors here.
/// </summary>
public sealed class Scheduler(BlockAllocator allocator, int maxBatchTokens, int maxRunning)
{
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];

    public int WaitingCount => _waiting.Count;
    public int RunningCount => _running.Count;
    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;
    public BlockAllocator Allocator => allocator;

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
            budget -= take;
        }
        while (!preempted && budget > 0 && _running.Count < maxRunning && _waiting.First is { } node)
        {
            var seq = node.Value;
            var take = Math.Min(seq.Length - seq.ComputedTokens, budget);
            if (!allocator.TryReserve(seq.BlockTable, seq.ComputedTokens + take)) break;
            _waiting.RemoveFirst();
            seq.Status = SequenceStatus.Running;
            _running.Add(seq);
            chunks.Add(new ScheduledChunk(seq, seq.ComputedTokens, take));
            budget -= take;
        }
        return chunks;
    }

    /// <summary>Ends a sequence wherever it is and frees its pages.</summary>
    public void Finish(Sequence seq, FinishReason reason, string? error = null)
    {
        if (seq.IsFinished) return;
        if (seq.Status == SequenceStatus.Waiting) _waiting.Remove(seq);
        else _running.Remove(seq);
        allocator.Release(seq.BlockTable);
        seq.Status = SequenceStatus.Finished;
        seq.FinishReason = reason;
        seq.Error = error;
    }

    private void Preempt(Sequence seq)
    {
        _running.Remove(seq);
        allocator.Release(seq.BlockTable);
        seq.ComputedTokens = 0;
        seq.Status = SequenceStatus.Waiting;
        _waiting.AddFirst(seq);
    }
}
