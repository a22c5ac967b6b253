using MoeMesh.Engine.Config;

namespace MoeMesh.Gateway.Routing;

/// <summary>The remote expert tier as /readyz and /metrics see it: which (layer, expert) pairs have an available holder.</summary>
public sealed class ExpertTier(ExpertNodeDirectory directory, YarpExpertRouter router)
{
    public ExpertNodeDirectory Directory => directory;

    /// <summary>The routing table as operators see it at /admin/routing: each node, its health and its holdings.</summary>
    public object Describe()
    {
        var available = router.AvailableNodes();
        return new
        {
            nodes = directory.Nodes.Select(n => new
            {
                id = n.Id,
                address = n.Address.ToString(),
                available = available.Contains(n.Id),
                error = directory.LastError(n.Id),
                placement_generation = directory.PlacementGeneration(n.Id),
                layers = directory.Table.Holdings.TryGetValue(n.Id, out var layers)
                    ? layers.Select(l => new { layer = l.Key, experts = l.Value }).ToArray()
                    : [],
            }),
        };
    }

    /// <summary>The pairs no available node holds, and the fraction of all pairs that are covered.</summary>
    public (IReadOnlyList<(int Layer, int Expert)> Uncovered, double Ratio, int AvailableNodes) Coverage(ModelConfig c)
    {
        var available = router.AvailableNodes();
        var layers = Enumerable.Range(0, c.NumHiddenLayers).Where(c.IsMoeLayer).ToList();
        var uncovered = directory.Table.Uncovered(layers, c.NRoutedExperts, available);
        var total = layers.Count * c.NRoutedExperts;
        return (uncovered, total == 0 ? 1 : 1 - (double)uncovered.Count / total, available.Count(directory.Table.Holdings.ContainsKey));
    }
}
