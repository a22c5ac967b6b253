using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// The grammars' caches (masks by state, compiled schemas, expressions and tool grammars by their text): thread-safe,
/// keyed by ordinal strings, and bounded by starting over when full, which keeps memory flat and costs at most a
/// recomputation of what was dropped.
/// </summary>
public sealed class ClearingCache<TValue>(int capacity)
{
    private readonly ConcurrentDictionary<string, TValue> _items = new(StringComparer.Ordinal);

    public int Count => _items.Count;

    public bool TryGet(string key, [MaybeNullWhen(false)] out TValue value) => _items.TryGetValue(key, out value);

    /// <summary>Keeps <paramref name="value"/> under <paramref name="key"/> (after dropping everything when full) and returns it.</summary>
    public TValue Add(string key, TValue value)
    {
        if (_items.Count >= capacity) _items.Clear();
        return _items[key] = value;
    }
}
