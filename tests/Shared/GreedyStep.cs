namespace MoeMesh.Testing;

/// <summary>One greedy pick with its log-probability and the top alternatives at its position (at least two).</summary>
public sealed record GreedyStep(int Token, double Logprob, IReadOnlyDictionary<int, double> Top)
{
    /// <summary>
    /// Two greedy runs of the same prompt that were computed differently (batched or alone, split over
    /// nodes, from cached pages) agree to float rounding, not bit for bit: log-probabilities must match
    /// within <paramref name="tolerance"/>, and the picks must match until a position where the expected
    /// run's two best tokens are tied within <paramref name="tolerance"/>; there a different pick is
    /// legitimate and the runs are compared no further.
    /// </summary>
    public static void AssertSame(IReadOnlyList<GreedyStep> expected, IReadOnlyList<GreedyStep> actual, double tolerance, string what = "run")
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            var e = expected[i];
            var a = actual[i];
            if (e.Token != a.Token)
            {
                var tied = e.Top.TryGetValue(a.Token, out var other) && Math.Abs(other - e.Logprob) <= 2 * tolerance;
                Assert.True(tied, $"{what}: position {i} picked {a.Token}, expected {e.Token}, whose lead is clear (top: {Describe(e.Top)})");
                return;
            }
            Close.Equal(e.Logprob, a.Logprob, tolerance, $"{what}: logprob of position {i}");
            AssertSameTop(e.Top, a.Top, tolerance, $"{what}: top logprobs of position {i}");
        }
    }

    /// <summary>The same alternatives with close values; one may hold a token the other lacks only where it ties the other's last entry.</summary>
    private static void AssertSameTop(IReadOnlyDictionary<int, double> e, IReadOnlyDictionary<int, double> a, double tolerance, string what)
    {
        foreach (var (x, y) in new[] { (e, a), (a, e) })
        {
            var floor = y.Values.Min();
            foreach (var (token, lp) in x)
            {
                if (y.TryGetValue(token, out var other)) Close.Equal(lp, other, tolerance, $"{what}, token {token}");
                else Assert.True(lp <= floor + 2 * tolerance, $"{what}: token {token} ({lp:R}) missing from {Describe(y)}");
            }
        }
    }

    private static string Describe(IReadOnlyDictionary<int, double> top) => string.Join(", ", top.OrderByDescending(t => t.Value).Select(t => $"{t.Key}:{t.Value:R}"));
}
