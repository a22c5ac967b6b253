using System.Collections.Frozen;

namespace MoeMesh.Gateway.Routing;

/// <summary>
/// Which nodes hold each (layer, expert), from the holdings the nodes report. Immutable: the directory
/// swaps in a new table when holdings change.
/// </summary>
public sealed class ExpertRoutingTable
{
    private readonly FrozenDictionary<(int Layer, int Expert), string[]> _holders;

    public static ExpertRoutingTable Empty { get; } = new(new Dictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>>());

    /// <param name="holdings">Per node id: per MoE layer, the experts it holds.</param>
    public ExpertRoutingTable(IReadOnlyDictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>> holdings)
    {
        Holdings = holdings;
        _holders = holdings
            .SelectMany(n => n.Value.SelectMany(l => l.Value.Select(e => (Key: (l.Key, e), Node: n.Key))))
            .GroupBy(x => x.Key, x => x.Node)
            .ToFrozenDictionary(g => g.Key, g => g.Order(StringComparer.Ordinal).ToArray());
    }

    public IReadOnlyDictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>> Holdings { get; }

    /// <summary>Nodes holding the expert of the layer (healthy or not).</summary>
    public IReadOnlyList<string> Holders(int layer, int expert) => _holders.TryGetValue((layer, expert), out var nodes) ? nodes : [];

    /// <summary>The (layer, expert) pairs no node in <paramref name="available"/> holds.</summary>
    public List<(int Layer, int Expert)> Uncovered(IEnumerable<int> moeLayers, int expertCount, IReadOnlySet<string> available) =>
        moeLayers.SelectMany(l => Enumerable.Range(0, expertCount).Select(e => (l, e)))
            .Where(k => !Holders(k.Item1, k.Item2).Any(available.Contains))
            .ToList();
}
