namespace MoeMesh.Engine.Experts;

/// <summary>
/// A set of expert indices parsed from "all", "0-15", "0,3,9-12" or "shard:2/4" (the third of four even, contiguous
/// slices of the experts, as the operator writes it without knowing the expert count); parts combine with commas.
/// </summary>
public static class ExpertSet
{
    public static IReadOnlyList<int> Parse(string spec, int expertCount)
    {
        if (string.IsNullOrWhiteSpace(spec) || spec.Trim() == "all") return Enumerable.Range(0, expertCount).ToArray();
        var set = new SortedSet<int>();
        foreach (var part in spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.StartsWith(ShardPrefix, StringComparison.Ordinal))
            {
                foreach (var e in Shard(part, spec, expertCount)) set.Add(e);
                continue;
            }
            var dash = part.IndexOf('-');
            var (from, to) = dash < 0
                ? (ParseIndex(part, spec), ParseIndex(part, spec))
                : (ParseIndex(part[..dash], spec), ParseIndex(part[(dash + 1)..], spec));
            if (from > to || to >= expertCount)
                throw new ArgumentException($"expert set '{spec}': range '{part}' is outside 0..{expertCount - 1}");
            for (var e = from; e <= to; e++) set.Add(e);
        }
        return set.ToArray();
    }

    public const string ShardPrefix = "shard:";

    /// <summary>The spec of shard <paramref name="index"/> of <paramref name="count"/>.</summary>
    public static string ShardSpec(int index, int count) => $"{ShardPrefix}{index}/{count}";

    /// <summary>Shard i of n: experts [floor(i*E/n), floor((i+1)*E/n)); with more shards than experts some are empty.</summary>
    private static IEnumerable<int> Shard(string part, string spec, int expertCount)
    {
        var body = part[ShardPrefix.Length..];
        var slash = body.IndexOf('/');
        if (slash < 0 || !int.TryParse(body[..slash], out var i) || !int.TryParse(body[(slash + 1)..], out var n) || n < 1 || i < 0 || i >= n)
            throw new ArgumentException($"expert set '{spec}': '{part}' is not shard:I/N with 0 <= I < N");
        var from = (int)((long)i * expertCount / n);
        var to = (int)((long)(i + 1) * expertCount / n);
        return Enumerable.Range(from, to - from);
    }

    private static int ParseIndex(string text, string spec) =>
        int.TryParse(text, out var i) && i >= 0 ? i : throw new ArgumentException($"expert set '{spec}': '{text}' is not an expert index");
}
