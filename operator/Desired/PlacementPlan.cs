using System.Text.Json.Nodes;

namespace MoeMesh.Operator.Desired;

/// <summary>
/// What each expert node holds: per node, a map from MoE layer ("*" for every layer not named) to an expert
/// spec. The operator's uniform plan needs no model shape ("shard:i/n"); the placement planner writes
/// per-layer plans from measured load. Nodes read their entry from the placement ConfigMap (--placement).
/// </summary>
public sealed record PlacementPlan(IReadOnlyList<IReadOnlyDictionary<string, string>> Nodes)
{
    /// <summary>The expert nodes' spec of shard i of n (engine ExpertSet: "shard:I/N").</summary>
    public static string Shard(int i, int n) => $"shard:{i}/{n}";

    /// <summary>
    /// The experts cut into one shard per node; node i holds shards i..i+r-1 (mod n), so that every expert has
    /// <paramref name="replicasPerExpert"/> holders (capped at the node count).
    /// </summary>
    public static PlacementPlan Uniform(int nodes, int replicasPerExpert)
    {
        var r = Math.Clamp(replicasPerExpert, 1, Math.Max(nodes, 1));
        return new PlacementPlan(Enumerable.Range(0, nodes)
            .Select(i => (IReadOnlyDictionary<string, string>)new SortedDictionary<string, string>(StringComparer.Ordinal)
            {
                ["*"] = string.Join(",", Enumerable.Range(0, r).Select(k => Shard((i + k) % nodes, nodes))),
            })
            .ToArray());
    }

    /// <summary>The document node <paramref name="i"/> reads, as ExpertPlacement.Parse takes it; an empty spec is an empty list (nothing).</summary>
    public string Document(int i, long generation) => new JsonObject
    {
        ["generation"] = generation,
        ["layers"] = new JsonObject(Nodes[i].Select(kv => KeyValuePair.Create(kv.Key, kv.Value.Length == 0 ? (JsonNode?)new JsonArray() : JsonValue.Create(kv.Value)))),
    }.ToJsonString();

    /// <summary>A digest of a placement ConfigMap's documents.</summary>
    public static string Digest(IDictionary<string, string> data) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(
            string.Join("\n", data.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key + "=" + kv.Value)))))[..16];

    /// <summary>
    /// The plan a placement ConfigMap holds for <paramref name="nodes"/> nodes (keys of <paramref name="pod"/> 0..n-1);
    /// null when a document is missing or unreadable.
    /// </summary>
    public static PlacementPlan? FromDocuments(IDictionary<string, string> data, int nodes, Func<int, string> pod)
    {
        var plan = new List<IReadOnlyDictionary<string, string>>();
        for (var i = 0; i < nodes; i++)
        {
            if (!data.TryGetValue(pod(i) + ".json", out var doc)) return null;
            try
            {
                if (JsonNode.Parse(doc)?["layers"] is not JsonObject layers) return null;
                plan.Add(new SortedDictionary<string, string>(layers.ToDictionary(kv => kv.Key, kv => kv.Value switch
                {
                    JsonArray a => string.Join(",", a.Select(x => x!.GetValue<int>())),
                    JsonValue v => v.GetValue<string>(),
                    _ => throw new FormatException("not an expert list"),
                }), StringComparer.Ordinal));
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or FormatException or InvalidOperationException)
            {
                return null;
            }
        }
        return new PlacementPlan(plan);
    }

    /// <summary>A node that holds nothing on any MoE layer.</summary>
    public static IReadOnlyDictionary<string, string> Empty { get; } = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["*"] = "" };

    /// <summary>Whether node <paramref name="i"/> holds nothing on any layer.</summary>
    public bool HoldsNothing(int i) => Nodes[i].Values.All(v => v.Length == 0);

    /// <summary>
    /// This plan for <paramref name="nodes"/> nodes: added nodes hold nothing; null when a node beyond the count
    /// still holds experts (dropping it would drop them).
    /// </summary>
    public PlacementPlan? Resized(int nodes)
    {
        if (Enumerable.Range(0, Nodes.Count).Any(i => i >= nodes && !HoldsNothing(i))) return null;
        return new PlacementPlan(Enumerable.Range(0, nodes).Select(i => i < Nodes.Count ? Nodes[i] : Empty).ToArray());
    }

    /// <summary>
    /// The shards of the "*" entries with no holder among <paramref name="readyNodes"/>, as "i/n" in shard order;
    /// empty for a per-layer plan, whose coverage the gateways report.
    /// </summary>
    public IReadOnlyList<string> UncoveredShards(IEnumerable<int> readyNodes)
    {
        var ready = readyNodes.ToHashSet();
        return Enumerable.Range(0, Nodes.Count)
            .SelectMany(i => Shards(Nodes[i]).Select(shard => (Shard: shard, Ready: ready.Contains(i))))
            .GroupBy(h => h.Shard)
            .Where(g => !g.Any(h => h.Ready))
            .Select(g => g.Key)
            .OrderBy(s => int.Parse(s[..s.IndexOf('/')]))
            .ToArray();
    }

    private static IEnumerable<string> Shards(IReadOnlyDictionary<string, string> node) =>
        node.TryGetValue("*", out var spec) ? spec.Split(',').Where(p => p.StartsWith("shard:", StringComparison.Ordinal)).Select(p => p["shard:".Length..]) : [];
}
