using System.Text.Json;
using MoeMesh.Engine.Config;

namespace MoeMesh.Engine.Experts;

/// <summary>
/// Which routed experts a node holds on each MoE layer. From --experts (the same set on every MoE layer)
/// or a placement document, as the operator writes it: {"generation": 3, "layers": {"1": "0-15", "2": [0, 3, 9], "*": "shard:0/4"}},
/// each value an expert spec (see <see cref="ExpertSet"/>) or a list of indices; "*" stands for every MoE layer not
/// named, and a MoE layer left out holds nothing. The optional generation is the operator's count of placements,
/// reported back so that it can tell which one a node serves.
/// </summary>
public sealed class ExpertPlacement
{
    private readonly SortedDictionary<int, int[]> _layers;

    private ExpertPlacement(SortedDictionary<int, int[]> layers, long? generation = null)
    {
        _layers = layers;
        Generation = generation;
    }

    /// <summary>The document's generation; null for --experts and documents without one.</summary>
    public long? Generation { get; }

    /// <summary>Per MoE layer, the experts held (ascending).</summary>
    public IReadOnlyDictionary<int, int[]> Layers => _layers;

    public bool Holds(int layer, int expert) => _layers.TryGetValue(layer, out var e) && Array.BinarySearch(e, expert) >= 0;

    /// <summary>Every held (layer, expert).</summary>
    public IEnumerable<(int Layer, int Expert)> Pairs => _layers.SelectMany(l => l.Value.Select(e => (l.Key, e)));

    public static ExpertPlacement Uniform(ModelConfig c, string spec) => Uniform(c, ExpertSet.Parse(spec, c.NRoutedExperts));

    public static ExpertPlacement Uniform(ModelConfig c, IReadOnlyList<int> held)
    {
        var experts = held.Order().ToArray();
        return new ExpertPlacement(new SortedDictionary<int, int[]>(
            Enumerable.Range(0, c.NumHiddenLayers).Where(c.IsMoeLayer).ToDictionary(l => l, _ => experts)));
    }

    /// <summary>Parses a placement document; throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static ExpertPlacement Parse(ModelConfig c, string json)
    {
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(json).RootElement;
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"placement: not JSON ({e.Message})");
        }
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("layers", out var layers) || layers.ValueKind != JsonValueKind.Object)
            throw new ArgumentException("placement: expected {\"layers\": {\"<layer>\" | \"*\": \"<experts>\" | [<expert>, ...]}}");
        long? generation = null;
        if (root.TryGetProperty("generation", out var g))
            generation = g.ValueKind == JsonValueKind.Number && g.TryGetInt64(out var n) && n >= 0 ? n
                : throw new ArgumentException("placement: 'generation' must be a non-negative integer");
        var result = new SortedDictionary<int, int[]>();
        int[]? others = null;
        foreach (var p in layers.EnumerateObject())
        {
            if (p.Name == "*")
            {
                others = Experts(c, p.Value, "*");
                continue;
            }
            if (!int.TryParse(p.Name, out var layer) || layer < 0 || layer >= c.NumHiddenLayers || !c.IsMoeLayer(layer))
                throw new ArgumentException($"placement: '{p.Name}' is not a MoE layer of this model");
            result[layer] = Experts(c, p.Value, $"layer {layer}");
        }
        if (others is not null)
            foreach (var layer in Enumerable.Range(0, c.NumHiddenLayers).Where(l => c.IsMoeLayer(l) && !result.ContainsKey(l)))
                result[layer] = others;
        return new ExpertPlacement(result, generation);
    }

    private static int[] Experts(ModelConfig c, JsonElement value, string what) => value.ValueKind switch
    {
        JsonValueKind.String => ExpertSet.Parse(value.GetString()!, c.NRoutedExperts).ToArray(),
        JsonValueKind.Array when value.GetArrayLength() == 0 => [],
        JsonValueKind.Array => ExpertSet.Parse(string.Join(",", value.EnumerateArray().Select(e => e.ToString())), c.NRoutedExperts).ToArray(),
        _ => throw new ArgumentException($"placement: {what} must map to an expert spec or a list of experts"),
    };

    /// <summary>The experts held by this placement or <paramref name="other"/>.</summary>
    public ExpertPlacement Union(ExpertPlacement other)
    {
        var layers = new SortedDictionary<int, int[]>();
        foreach (var l in _layers.Keys.Union(other._layers.Keys))
            layers[l] = _layers.GetValueOrDefault(l, []).Union(other._layers.GetValueOrDefault(l, [])).Order().ToArray();
        return new ExpertPlacement(layers, other.Generation);
    }
}
