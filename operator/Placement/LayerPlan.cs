namespace MoeMesh.Operator.Placement;

/// <summary>
/// Which experts each node holds on one MoE layer (a node holds an expert at most once). With the gateways
/// spreading an expert's tokens evenly over its holders, a node's load is the sum over its experts of the
/// expert's load divided by its holder count.
/// </summary>
public sealed class LayerPlan
{
    private readonly SortedSet<int>[] _nodes;

    public LayerPlan(IEnumerable<IEnumerable<int>> nodes) => _nodes = nodes.Select(n => new SortedSet<int>(n)).ToArray();

    public int NodeCount => _nodes.Length;

    public IReadOnlyList<IReadOnlyCollection<int>> Nodes => _nodes;

    public bool Holds(int node, int expert) => _nodes[node].Contains(expert);

    internal SortedSet<int> Node(int node) => _nodes[node];

    /// <summary>Holders per expert.</summary>
    public int[] Replicas(int experts)
    {
        var counts = new int[experts];
        foreach (var n in _nodes) foreach (var e in n) counts[e]++;
        return counts;
    }

    public double[] NodeLoads(IReadOnlyList<double> load)
    {
        var counts = Replicas(load.Count);
        return _nodes.Select(n => n.Sum(e => load[e] / counts[e])).ToArray();
    }

    /// <summary>Max over mean node load: 1 is perfect balance.</summary>
    public double Imbalance(IReadOnlyList<double> load)
    {
        var loads = NodeLoads(load);
        var mean = loads.Average();
        return mean <= 0 ? 1 : loads.Max() / mean;
    }

    /// <summary>Expert copies this plan has that <paramref name="before"/> did not (what nodes must load to get here).</summary>
    public int MovesFrom(LayerPlan before) =>
        Enumerable.Range(0, NodeCount).Sum(i => _nodes[i].Count(e => i >= before.NodeCount || !before._nodes[i].Contains(e)));

    public LayerPlan Clone() => new(_nodes);
}
