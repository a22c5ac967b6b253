using System.Threading.Channels;

namespace MoeMesh.Operator.Reconcile;

/// <summary>
/// Keys waiting for a reconcile, as client-go's work queue: a key is queued at most once, a key being
/// processed is not handed out again until it is done (then it goes again if it was added meanwhile), and a
/// failing key comes back after an exponential backoff.
/// </summary>
public sealed class WorkQueue<TKey>(TimeSpan baseDelay, TimeSpan maxDelay) where TKey : notnull
{
    private readonly Channel<TKey> _ready = Channel.CreateUnbounded<TKey>();
    private readonly HashSet<TKey> _dirty = [];
    private readonly HashSet<TKey> _processing = [];
    private readonly Dictionary<TKey, int> _failures = [];
    private readonly Lock _lock = new();

    /// <summary>Keys queued or waiting to go again.</summary>
    public int Depth
    {
        get
        {
            lock (_lock) return _dirty.Count;
        }
    }

    public void Add(TKey key)
    {
        lock (_lock)
        {
            if (!_dirty.Add(key)) return;
            if (!_processing.Contains(key)) _ready.Writer.TryWrite(key);
        }
    }

    /// <summary>Adds the key after its backoff (base x 2^failures, capped); returns the delay.</summary>
    public TimeSpan AddRateLimited(TKey key, CancellationToken ct)
    {
        TimeSpan delay;
        lock (_lock)
        {
            var failures = _failures.GetValueOrDefault(key);
            _failures[key] = failures + 1;
            delay = TimeSpan.FromTicks(Math.Min(maxDelay.Ticks, baseDelay.Ticks * (1L << Math.Min(failures, 30))));
        }
        _ = Task.Delay(delay, ct).ContinueWith(_ => Add(key), ct, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        return delay;
    }

    /// <summary>Clears the key's failures after a success.</summary>
    public void Forget(TKey key)
    {
        lock (_lock) _failures.Remove(key);
    }

    public async Task<TKey> TakeAsync(CancellationToken ct)
    {
        while (true)
        {
            var key = await _ready.Reader.ReadAsync(ct);
            lock (_lock)
            {
                if (!_dirty.Remove(key)) continue;
                _processing.Add(key);
                return key;
            }
        }
    }

    public void Done(TKey key)
    {
        lock (_lock)
        {
            _processing.Remove(key);
            if (_dirty.Contains(key)) _ready.Writer.TryWrite(key);
        }
    }
}
