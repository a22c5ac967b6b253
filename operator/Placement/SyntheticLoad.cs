namespace MoeMesh.Operator.Placement;

/// <summary>Seeded synthetic expert loads for the planner's tests, benchmark and simulations.</summary>
public static class SyntheticLoad
{
    /// <summary>A standard normal draw (Box-Muller).</summary>
    public static double Normal(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    /// <summary>Log-normal loads: exp(sigma x N(0, 1)) per expert.</summary>
    public static double[] LogNormal(Random r, int experts, double sigma) => Enumerable.Range(0, experts).Select(_ => Math.Exp(sigma * Normal(r))).ToArray();

    /// <summary>Zipf over a random order of the experts: the k-th hottest gets 1/k^s.</summary>
    public static double[] Zipf(Random r, int experts, double s)
    {
        var order = Enumerable.Range(0, experts).OrderBy(_ => r.Next()).ToArray();
        var load = new double[experts];
        for (var k = 0; k < experts; k++) load[order[k]] = 1 / Math.Pow(k + 1, s);
        return load;
    }

    /// <summary>The loads after a drift: each expert's load times a log-normal factor.</summary>
    public static double[] Drift(Random r, IReadOnlyList<double> load, double sigma) => load.Select(x => x * Math.Exp(sigma * Normal(r))).ToArray();
}
