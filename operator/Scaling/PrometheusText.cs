using System.Globalization;

namespace MoeMesh.Operator.Scaling;

/// <summary>Reads values out of Prometheus' text exposition format (what /metrics serves).</summary>
public static class PrometheusText
{
    /// <summary>The sum of every sample of <paramref name="name"/> (all label sets); null when there is none.</summary>
    public static double? Sum(string text, string name)
    {
        double? sum = null;
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#' || !line.StartsWith(name, StringComparison.Ordinal)) continue;
            var rest = line.AsSpan(name.Length);
            if (rest.Length == 0 || (rest[0] != ' ' && rest[0] != '{')) continue;
            var value = line[(line.LastIndexOf(' ') + 1)..];
            if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && !double.IsNaN(v)) sum = (sum ?? 0) + v;
        }
        return sum;
    }
}
