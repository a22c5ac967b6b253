namespace MoeMesh.Bench;

/// <summary>What several benchmarks compute alike: medians of rounds and a process's memory from /proc.</summary>
internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>A byte figure of /proc/self/status, or of process <paramref name="pid"/>'s ("VmRSS:", "VmHWM:").</summary>
    public static long StatusBytes(string field, int? pid = null) =>
        long.Parse(File.ReadLines($"/proc/{pid?.ToString() ?? "self"}/status").First(l => l.StartsWith(field))[field.Length..].Trim().Split(' ')[0]) * 1024;
}
