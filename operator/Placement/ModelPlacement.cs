using MoeMesh.Operator.Desired;

namespace MoeMesh.Operator.Placement;

/// <summary>A placement of every MoE layer: the planner's output, and what a roll-out moves between.</summary>
public sealed record ModelPlacement(IReadOnlyDictionary<int, LayerPlan> Layers)
{
    public int NodeCount => Layers.Values.Select(l => l.NodeCount).DefaultIfEmpty(0).Max();

    /// <summary>
    /// The uniform "shard:i/n" plan resolved against the model's shape (known once the gateways report load):
    /// node i holds, on every MoE layer, the experts of its shards.
    /// </summary>
    public static ModelPlacement Resolve(PlacementPlan plan, IEnumerable<int> moeLayers, int experts)
    {
        var layers = new SortedDictionary<int, LayerPlan>();
        foreach (var layer in moeLayers)
            layers[layer] = new LayerPlan(plan.Nodes.Select(node => Experts(node.TryGetValue(layer.ToString(), out var s) ? s : node.GetValueOrDefault("*", ""), experts)));
        return new ModelPlacement(layers);
    }

    /// <summary>Every node holds what it holds in either placement: the "make" half of make-before-break.</summary>
    public ModelPlacement Union(ModelPlacement other) => new(new SortedDictionary<int, LayerPlan>(
        Layers.Keys.Union(other.Layers.Keys).ToDictionary(l => l, l =>
        {
            var a = Layers.GetValueOrDefault(l);
            var b = other.Layers.GetValueOrDefault(l);
            var n = Math.Max(a?.NodeCount ?? 0, b?.NodeCount ?? 0);
            return new LayerPlan(Enumerable.Range(0, n).Select(i =>
                (a is not null && i < a.NodeCount ? a.Nodes[i] : []).Union(b is not null && i < b.NodeCount ? b.Nodes[i] : [])));
        })));

    /// <summary>This placement on <paramref name="nodes"/> nodes, the added ones holding nothing.</summary>
    public ModelPlacement Padded(int nodes) => new(new SortedDictionary<int, LayerPlan>(Layers.ToDictionary(l => l.Key,
        l => new LayerPlan(Enumerable.Range(0, Math.Max(nodes, l.Value.NodeCount)).Select(i => i < l.Value.NodeCount ? l.Value.Nodes[i] : (IEnumerable<int>)[])))));

    /// <summary>The nodes that hold, on some layer, an expert they do not hold in <paramref name="before"/>.</summary>
    public IReadOnlySet<int> GainersOver(ModelPlacement before) =>
        Enumerable.Range(0, NodeCount).Where(i => Layers.Any(l =>
            i < l.Value.NodeCount && l.Value.Nodes[i].Except(before.Layers.TryGetValue(l.Key, out var b) && i < b.NodeCount ? b.Nodes[i] : []).Any())).ToHashSet();

    /// <summary>Expert copies the target adds over this placement, over all layers.</summary>
    public int MovesTo(ModelPlacement target) => target.Layers.Sum(l => l.Value.MovesFrom(Layers.TryGetValue(l.Key, out var p) ? p : new LayerPlan([])));

    /// <summary>The per-node documents the nodes read (explicit expert lists per layer).</summary>
    public PlacementPlan ToPlan() => new(Enumerable.Range(0, NodeCount)
        .Select(i => (IReadOnlyDictionary<string, string>)new SortedDictionary<string, string>(
            Layers.ToDictionary(l => l.Key.ToString(), l => i < l.Value.NodeCount ? string.Join(",", l.Value.Nodes[i]) : ""), StringComparer.Ordinal))
        .ToArray());

    private static IEnumerable<int> Experts(string spec, int experts)
    {
        var set = new SortedSet<int>();
        foreach (var part in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part.StartsWith("shard:", StringComparison.Ordinal))
            {
                var (i, n) = (int.Parse(part[6..part.IndexOf('/')]), int.Parse(part[(part.IndexOf('/') + 1)..]));
                for (var e = (int)((long)i * experts / n); e < (int)((long)(i + 1) * experts / n); e++) set.Add(e);
            }
            else set.Add(int.Parse(part));
        }
        return set;
    }
}

/// <summary>
/// Make-before-break: a placement change is rolled out in two phases. First every node also loads what it
/// gains (the union of old and new), and only once every node advertises that and the gateways route by it,
/// the second phase drops what moved away. Coverage never drops below either placement's.
/// </summary>
public static class Rollout
{
    public static IReadOnlyList<ModelPlacement> Phases(ModelPlacement from, ModelPlacement to) => [from.Union(to), to];

    /// <summary>
    /// The documents to write, phase by phase, leaving out a phase that changes nothing (a target that only adds
    /// copies needs no second phase, one that only drops needs no first): each written phase is a new generation.
    /// </summary>
    public static IReadOnlyList<Desired.PlacementPlan> Steps(ModelPlacement from, ModelPlacement to)
    {
        var steps = new List<Desired.PlacementPlan>();
        var previous = Text(from.ToPlan());
        foreach (var phase in Phases(from, to).Select(p => p.ToPlan()))
        {
            var text = Text(phase);
            if (text == previous) continue;
            steps.Add(phase);
            previous = text;
        }
        return steps;
    }

    private static string Text(Desired.PlacementPlan p) => string.Join("\n", Enumerable.Range(0, p.Nodes.Count).Select(i => p.Document(i, 0)));
}
