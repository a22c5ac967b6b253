using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests.Sampling;

public sealed class SamplerTests
{
    private static readonly float[] Logits = [0.1f, 2.0f, -1.0f, 1.5f, 0.0f];

    [Fact]
    public void Greedy_PicksTheLargestLogit()
    {
        Assert.Equal(1, Sampler.Sample(Logits, new SamplingParams { Temperature = 0 }, new Random(1)));
        Assert.Equal(1, Sampler.Sample(Logits, new SamplingParams { Temperature = 1, TopK = 1 }, new Random(1)));
    }

    [Fact]
    public void SmallTopP_KeepsOnlyTheBestToken()
    {
        var p = new SamplingParams { Temperature = 1, TopP = 0.01 };
        Assert.All(Enumerable.Range(0, 50), i => Assert.Equal(1, Sampler.Sample(Logits, p, new Random(i))));
    }

    [Fact]
    public void TopK_NeverPicksOutsideTheK()
    {
        var p = new SamplingParams { Temperature = 5, TopK = 2 };
        var picks = Enumerable.Range(0, 200).Select(i => Sampler.Sample(Logits, p, new Random(i))).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 3 }, picks);
    }

    [Fact]
    public void Sampling_FollowsTheSoftmaxDistribution()
    {
        var p = new SamplingParams { Temperature = 1 };
        var random = new Random(42);
        var counts = new int[Logits.Length];
        const int draws = 20000;
        for (var i = 0; i < draws; i++) counts[Sampler.Sample(Logits, p, random)]++;
        var z = Logits.Sum(l => Math.Exp(l));
        for (var t = 0; t < Logits.Length; t++) Close.Equal(Math.Exp(Logits[t]) / z, counts[t] / (double)draws, 0.02, $"frequency of token {t}");
    }

    [Fact]
    public void Logprobs_AreLogSoftmaxOfTheRawLogits_WithSortedTop()
    {
        var lp = Sampler.Logprobs(Logits, 3, top: 2);
        var logZ = Math.Log(Logits.Sum(l => Math.Exp(l)));
        Close.Equal(1.5 - logZ, lp.Logprob, 1e-5);
        Assert.Equal([1, 3], lp.Top.Select(t => t.TokenId));
        Close.Equal(2.0 - logZ, lp.Top[0].Logprob, 1e-5);
    }

    /// <summary>The definition top-k and top-p follow: sort the whole vocabulary, cut, draw once.</summary>
    private static int ReferenceSample(float[] logits, SamplingParams p, Random random)
    {
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).ToArray();
        if (p.TopK > 0) order = order.Take(p.TopK).ToArray();
        var max = logits[order[0]];
        var probs = order.Select(i => Math.Exp((logits[i] - max) / p.Temperature)).ToArray();
        var total = p.TopK > 0 ? probs.Sum() : logits.Sum(l => Math.Exp((l - max) / p.Temperature));
        var keep = order.Length;
        double cumulative = 0;
        for (var i = 0; i < order.Length && p.TopP < 1; i++)
        {
            cumulative += probs[i] / total;
            if (cumulative >= p.TopP) { keep = i + 1; break; }
        }
        var u = random.NextDouble() * probs.Take(keep).Sum();
        for (var i = 0; i < keep; i++)
        {
            u -= probs[i];
            if (u <= 0) return order[i];
        }
        return order[keep - 1];
    }

    public static TheoryData<int, double, double> Cuts() => new()
    {
        { 0, 0.9, 1.0 }, { 0, 0.5, 0.7 }, { 0, 0.99, 1.5 }, { 100, 1.0, 1.0 }, { 100, 0.8, 1.0 }, { 1000, 0.95, 0.8 }, { 20, 0.7, 1.0 },
    };

    [Theory]
    [MemberData(nameof(Cuts))]
    public void TopKAndTopP_PickWhatSortingTheWholeVocabularyPicks(int topK, double topP, double temperature)
    {
        var p = new SamplingParams { Temperature = temperature, TopK = topK, TopP = topP };
        var data = new Random(topK * 31 + (int)(topP * 100));
        for (var row = 0; row < 40; row++)
        {
            // Rows of 32k logits, from flat to peaked.
            var logits = Enumerable.Range(0, 32000).Select(_ => (float)(data.NextDouble() * 4 * (row % 5 + 1) - 2)).ToArray();
            for (var seed = 0; seed < 3; seed++)
                Assert.Equal(ReferenceSample(logits, p, new Random(seed)), Sampler.Sample(logits, p, new Random(seed)));
        }
    }

    [Fact]
    public void DefaultSampling_DoesNotSortTheVocabulary()
    {
        // Sorting 32k ids allocates their array and a copy of the row; the default path needs neither.
        var logits = Enumerable.Range(0, 32000).Select(i => (float)Math.Sin(i)).ToArray();
        var p = new SamplingParams { Temperature = 0.8 };
        var random = new Random(3);
        Sampler.Sample(logits, p, random);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20; i++) Sampler.Sample(logits, p, random);
        var perToken = (GC.GetAllocatedBytesForCurrentThread() - before) / 20;
        Assert.True(perToken < 4096, $"{perToken} bytes allocated per token");
    }
}
