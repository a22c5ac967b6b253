using System.Diagnostics;
using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Bench;

/// <summary>
/// Time per token of picking a token from one row of logits, at a 32k and at DeepSeek-V3's 129k vocabulary:
/// the sampler's paths against sorting the whole vocabulary (what every sampled token cost before). Rounds
/// interleave the variants; each figure is the median of its rounds.
/// </summary>
public static class SamplingBenchmark
{
    private const int Rounds = 7;
    private const int TokensPerRound = 200;

    public static void Run()
    {
        foreach (var vocab in new[] { 32000, 129280 })
        {
            // Logits shaped like a language model's: a few strong candidates over a long low tail.
            var data = new Random(1);
            var rows = Enumerable.Range(0, 16).Select(_ => Enumerable.Range(0, vocab).Select(i => (float)(Normal(data) * 2.5 - (i % 7 == 0 ? 0 : 1))).ToArray()).ToArray();
            var variants = new (string Name, Func<float[], Random, int> Pick)[]
            {
                ("greedy", (l, r) => Sampler.Sample(l, new SamplingParams { Temperature = 0 }, r)),
                ("temperature 0.8", (l, r) => Sampler.Sample(l, new SamplingParams { Temperature = 0.8 }, r)),
                ("top_p 0.9", (l, r) => Sampler.Sample(l, new SamplingParams { Temperature = 0.8, TopP = 0.9 }, r)),
                ("top_k 50", (l, r) => Sampler.Sample(l, new SamplingParams { Temperature = 0.8, TopK = 50 }, r)),
                ("top_k 1000, top_p 0.95", (l, r) => Sampler.Sample(l, new SamplingParams { Temperature = 0.8, TopK = 1000, TopP = 0.95 }, r)),
                ("whole-vocabulary sort", SortAll),
                ("logprobs (top 5)", (l, r) => Sampler.Logprobs(l, 0, 5).TokenId),
            };
            var times = variants.Select(_ => new List<double>()).ToArray();
            for (var round = 0; round < Rounds; round++)
            {
                for (var v = 0; v < variants.Length; v++)
                {
                    var random = new Random(round);
                    var sw = Stopwatch.StartNew();
                    for (var t = 0; t < TokensPerRound; t++) variants[v].Pick(rows[t % rows.Length], random);
                    times[v].Add(sw.Elapsed.TotalMicroseconds / TokensPerRound);
                }
            }
            Console.WriteLine($"vocabulary {vocab}: microseconds per token (median of {Rounds} rounds of {TokensPerRound} tokens)");
            var sortMedian = Stats.Median(times[Array.FindIndex(variants, v => v.Name == "whole-vocabulary sort")]);
            for (var v = 0; v < variants.Length; v++)
            {
                var median = Stats.Median(times[v]);
                Console.WriteLine($"  {variants[v].Name,-24} {median,9:F1}   whole-vocabulary sort / this = {sortMedian / median,6:F1}x   rounds: {string.Join(" ", times[v].Select(t => t.ToString("F0")))}");
            }
        }
    }

    /// <summary>What default sampling did per token before: sort every token id by logit, then draw.</summary>
    private static int SortAll(float[] logits, Random random)
    {
        var ids = new int[logits.Length];
        for (var i = 0; i < ids.Length; i++) ids[i] = i;
        var values = logits.ToArray();
        Array.Sort(ids, (a, b) => values[b] != values[a] ? values[b].CompareTo(values[a]) : a.CompareTo(b));
        var max = logits[ids[0]];
        double sum = 0;
        var probs = new double[ids.Length];
        for (var i = 0; i < ids.Length; i++) sum += probs[i] = Math.Exp((logits[ids[i]] - max) / 0.8);
        var u = random.NextDouble() * sum;
        for (var i = 0; i < ids.Length; i++)
        {
            u -= probs[i];
            if (u <= 0) return ids[i];
        }
        return ids[^1];
    }

    private static double Normal(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

}
