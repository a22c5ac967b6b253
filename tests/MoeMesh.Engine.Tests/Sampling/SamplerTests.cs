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
        for (var t = 0; t < Logits.Length; t++) Assert.Equal(Math.Exp(Logits[t]) / z, counts[t] / (double)draws, 1);
    }

    [Fact]
    public void Logprobs_AreLogSoftmaxOfTheRawLogits_WithSortedTop()
    {
        var lp = Sampler.Logprobs(Logits, 3, top: 2);
        var logZ = Math.Log(Logits.Sum(l => Math.Exp(l)));
        Assert.Equal(1.5 - logZ, lp.Logprob, 5);
        Assert.Equal([1, 3], lp.Top.Select(t => t.TokenId));
        Assert.Equal(2.0 - logZ, lp.Top[0].Logprob, 5);
    }
}
