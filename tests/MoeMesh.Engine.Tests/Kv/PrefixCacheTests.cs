using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests.Kv;

/// <summary>Prefix caching: page bookkeeping by hand, then a caching engine against one that recomputes everything.</summary>
public sealed class PrefixCacheTests
{
    private static readonly UInt128 Root = PageHash.Root;

    /// <summary>Pages computed in another batch composition equal recomputation to float rounding (about 1e-6).</summary>
    private const double Tolerance = 1e-4;

    [Fact]
    public void PublishedPages_AreFoundByTheirWholePrefix_Only()
    {
        var a = new BlockAllocator(8, 4);
        int[] tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        var table = new List<int>();
        Assert.True(a.TryReserve(table, tokens.Length));
        Assert.Equal((2, a.PageHash(a.PageHash(Root, tokens, 0), tokens, 1)), a.Publish(table, tokens, tokens.Length, 0, Root));
        Assert.Equal(2, a.CachedPages); // the partial third page is not published

        var taken = new List<int>();
        Assert.Equal(8, a.TakePrefix(taken, [1, 2, 3, 4, 5, 6, 7, 8, 11], 8).Tokens);
        Assert.Equal(table.Take(2), taken);
        Assert.Equal(4, a.TakePrefix(new List<int>(), tokens, 7).Tokens); // capped at whole pages within 7 tokens
        Assert.Equal(0, a.TakePrefix(new List<int>(), [0, 2, 3, 4, 5, 6, 7, 8], 8).Tokens); // first page differs
        Assert.Equal(0, a.TakePrefix(new List<int>(), [5, 6, 7, 8], 4).Tokens); // same tokens, another position
        Assert.Equal(4, a.TakePrefix(new List<int>(), [1, 2, 3, 4, 5, 6, 7, 9], 8).Tokens); // second page differs
    }

    [Fact]
    public void CachedPages_AreTakenAfterFreeOnes_LeastRecentlyReleasedFirst_AndNeverWhileReferenced()
    {
        var a = new BlockAllocator(4, 2);
        var first = new List<int>();
        Assert.True(a.TryReserve(first, 4));
        a.Publish(first, [1, 2, 3, 4], 4, 0, Root);
        var firstPages = first.ToList();
        a.Release(first);
        var second = new List<int>();
        Assert.True(a.TryReserve(second, 2));
        a.Publish(second, [5, 6], 2, 0, Root);
        var secondPage = second[0];
        a.Release(second);
        Assert.Equal((4, 3, 0), (a.FreePages, a.CachedPages, a.UsedPages));

        var next = new List<int>();
        Assert.True(a.TryReserve(next, 2));
        Assert.DoesNotContain(next[0], firstPages.Append(secondPage)); // a never-used page first
        Assert.True(a.TryReserve(next, 4));
        Assert.Equal(firstPages[0], next[1]); // then the least recently released cached page
        Assert.Equal(0, a.TakePrefix(new List<int>(), [1, 2, 3, 4], 4).Tokens); // that prefix is gone

        var reused = new List<int>();
        Assert.Equal(2, a.TakePrefix(reused, [5, 6], 2).Tokens);
        Assert.Equal([secondPage], reused);
        var last = new List<int>();
        Assert.False(a.TryReserve(last, 4)); // one page is takeable; the referenced cached page is not
        Assert.True(a.TryReserve(last, 2));
        Assert.Equal(firstPages[1], last[0]);
        Assert.Equal(2, a.TakePrefix(new List<int>(), [5, 6], 2).Tokens);
    }

    private static readonly int[] System = Enumerable.Range(0, 22).Select(i => 30 + 7 * i % 200).ToArray();

    public static TheoryData<int> CachePages() => new() { 256, 14 };

    [Theory]
    [MemberData(nameof(CachePages))]
    public void CachingEngine_GivesTheRecomputedOutput_AndComputesOnlyWhatIsNew(int pages)
    {
        var model = TestModels.Load(TestModels.V3Dir);
        var bytes = (long)pages * 4 * model.Config.NumHiddenLayers * model.Config.LatentCacheDim * sizeof(float);
        LlmEngine Engine(bool caching) => new(model, new EngineOptions { KvCacheBytes = bytes, PageSize = 4, PrefixCaching = caching }, null, null);
        int[][] prompts =
        [
            [.. System, 5, 6, 7],
            [.. System, 9, 10],
            [.. System, 5, 6, 7], // a repeat: every whole page but the one holding the last token is reused
            [.. System.Take(9), 3, 3, 3, 3],
            [.. System],
            [.. Enumerable.Range(300, 25)], // unrelated: in the small cache it evicts the first prompt's leading page
            [.. System, 5, 6, 7],
        ];
        var cached = Engine(caching: true);
        var plain = Engine(caching: false);
        foreach (var prompt in prompts)
        {
            GreedyStep.AssertSame(Generate(plain, prompt), Generate(cached, prompt), Tolerance, $"prompt of {prompt.Length} tokens");
        }
        Assert.Equal(prompts.Sum(p => p.Length - 1), cached.PrefixQueryTokens);
        Assert.Equal(0, plain.PrefixHitTokens);
        if (pages == 256)
        {
            // Whole pages of 4 shared with an earlier prompt, short of the last token: 0, 20, 24 (a repeat
            // reaches its own second-to-last token), 8, 20, 0 and 24.
            Assert.Equal(0 + 20 + 24 + 8 + 20 + 0 + 24, cached.PrefixHitTokens);
        }
        Assert.Equal(0, cached.CacheUsage); // nothing referenced once all have finished
    }

    [Fact]
    public void SequencesArrivingTogether_ComputeTheirSharedPrefixOnce_AndGiveTheRecomputedOutput()
    {
        var model = TestModels.Load(TestModels.V3Dir);
        var bytes = 256L * 4 * model.Config.NumHiddenLayers * model.Config.LatentCacheDim * sizeof(float);
        LlmEngine Engine(bool caching) => new(model, new EngineOptions { KvCacheBytes = bytes, PageSize = 4, PrefixCaching = caching }, null, null);
        // Three choices of one prompt and another request with the same system prompt, all in the first step.
        int[][] prompts = [[.. System, 5, 6, 7], [.. System, 5, 6, 7], [.. System, 9, 10], [.. System, 5, 6, 7]];
        var results = new[] { Engine(caching: true), Engine(caching: false) }.Select(engine =>
        {
            var seqs = prompts.Select(p => engine.Add(p, new SamplingParams { MaxTokens = 4, Temperature = 0, Logprobs = 2, IgnoreEos = true })).ToList();
            var steps = seqs.ToDictionary(s => s.Id, _ => new List<GreedyStep>());
            while (engine.HasWork)
                foreach (var u in engine.Step()) steps[u.Sequence.Id].Add(Step(u.Logprob!));
            return (engine, seqs.Select(s => steps[s.Id]).ToList());
        }).ToList();
        var (cached, withCache) = results[0];
        var (_, recomputed) = results[1];
        // The first computes the prefix; the others wait one step and take it: 24, 20 (the system prompt's
        // whole pages) and 24 tokens.
        Assert.Equal(24 + 20 + 24, cached.PrefixHitTokens);
        for (var i = 0; i < prompts.Length; i++) GreedyStep.AssertSame(recomputed[i], withCache[i], Tolerance, $"prompt {i}");
    }

    private static List<GreedyStep> Generate(LlmEngine engine, int[] prompt)
    {
        var seq = engine.Add(prompt, new SamplingParams { MaxTokens = 6, Temperature = 0, Logprobs = 2, IgnoreEos = true });
        var steps = new List<GreedyStep>();
        while (!seq.IsFinished)
            foreach (var u in engine.Step()) steps.Add(Step(u.Logprob!));
        return steps;
    }

    private static GreedyStep Step(MoeMesh.Engine.Sampling.TokenLogprob lp) =>
        new(lp.TokenId, lp.Logprob, lp.Top.ToDictionary(t => t.TokenId, t => (double)t.Logprob));
}
