namespace MoeMesh.Engine.Experts;

/// <summary>A set of expert indices parsed from "all", "0-15" or "0,3,9-12".</summary>
public static class ExpertSet
{
    public static IReadOnlyList<int> Parse(string spec, int expertCount)
    {
        if (string.IsNullOrWhiteSpace(spec) || spec.Trim() == "all") return Enumerable.Range(0, expertCount).ToArray();
        var set = new SortedSet<int>();
        foreach (var part in spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
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

    private static int ParseIndex(string text, string spec) =>
        int.TryParse(text, out var i) && i >= 0 ? i : throw new ArgumentException($"expert set '{spec}': '{text}' is not an expert index");
}
