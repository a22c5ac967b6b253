using System.Diagnostics;

namespace MoeMesh.Engine.Experts;

/// <summary>
/// Tokens routed to each (MoE layer, expert), as a moving window: counts go into the current bucket of a ring
/// of buckets, and a read sums the buckets of the last window. Lock-free on the recording path; 58 x 256
/// counters per bucket for DeepSeek-V3. The placement planner's input.
/// </summary>
public sealed class ExpertLoad
{
    private readonly int _experts;
    private readonly int _layers;
    private readonly long[][] _buckets;
    private readonly long[] _bucketIds;
    private readonly Lock _rotate = new();
    private readonly long _bucketTicks;
    private readonly Func<long> _clock;

    /// <param name="clock">Stopwatch ticks; injected by tests.</param>
    public ExpertLoad(int layers, int experts, TimeSpan bucket, int buckets, Func<long>? clock = null)
    {
        _layers = layers;
        _experts = experts;
        _bucketTicks = (long)(bucket.TotalSeconds * Stopwatch.Frequency);
        _buckets = Enumerable.Range(0, buckets).Select(_ => new long[layers * experts]).ToArray();
        _bucketIds = Enumerable.Repeat(-1L, buckets).ToArray();
        _clock = clock ?? Stopwatch.GetTimestamp;
        Window = bucket * buckets;
    }

    /// <summary>The span a read covers.</summary>
    public TimeSpan Window { get; }

    public void Record(int layer, ReadOnlySpan<long> experts)
    {
        if (layer < 0 || layer >= _layers) return;
        var counts = Current();
        var row = layer * _experts;
        foreach (var e in experts)
            if (e >= 0 && e < _experts) Interlocked.Increment(ref counts[row + e]);
    }

    /// <summary>Per layer, the tokens each expert got over the window (layers with none are all zeros).</summary>
    public long[][] Read()
    {
        var now = _clock() / _bucketTicks;
        var sum = new long[_layers * _experts];
        lock (_rotate)
            for (var b = 0; b < _buckets.Length; b++)
                if (_bucketIds[b] > now - _buckets.Length)
                    for (var i = 0; i < sum.Length; i++) sum[i] += Interlocked.Read(ref _buckets[b][i]);
        return Enumerable.Range(0, _layers).Select(l => sum.AsSpan(l * _experts, _experts).ToArray()).ToArray();
    }

    private long[] Current()
    {
        var id = _clock() / _bucketTicks;
        var slot = (int)(id % _buckets.Length);
        if (Volatile.Read(ref _bucketIds[slot]) == id) return _buckets[slot];
        lock (_rotate)
        {
            if (_bucketIds[slot] != id)
            {
                Array.Clear(_buckets[slot]);
                Volatile.Write(ref _bucketIds[slot], id);
            }
            return _buckets[slot];
        }
    }
}
