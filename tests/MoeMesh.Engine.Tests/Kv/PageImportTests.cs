using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests.Kv;

/// <summary>Pages computed by one engine, copied out and imported into another (the shared store's path without the store).</summary>
public sealed class PageImportTests
{
    private static readonly UInt128 Root = PageHash.Root;
    private const double Tolerance = 1e-4;

    [Fact]
    public void Import_PublishesNewPagesOnAPublishedPrefix_SkipsKnownOnes_AndFillsOnlyNewOnes()
    {
        var a = new BlockAllocator(8, 2);
        int[] tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        var table = new List<int>();
        Assert.True(a.TryReserve(table, 4));
        a.Publish(table, tokens, 4, 0, Root); // pages 0 and 1 computed here
        a.Release(table);

        var filled = new List<(int Page, int Index)>();
        // Pages 1..3 offered: page 1 is already here, 2 and 3 are new.
        Assert.Equal(3, a.Import(tokens, 1, 3, (page, i) => filled.Add((page, i))));
        Assert.Equal([1, 2], filled.Select(f => f.Index));
        Assert.Equal(4, a.CachedPages);
        Assert.Equal(0, a.UsedPages); // nothing stays referenced
        var taken = new List<int>();
        Assert.Equal(8, a.TakePrefix(taken, tokens, 8).Tokens);
        Assert.Equal(filled.Select(f => f.Page), taken.Skip(2));
    }

    [Fact]
    public void Import_WithoutItsPrefixHere_ImportsNothing_AndStopsWhenTheCacheIsFull()
    {
        int[] tokens = [1, 2, 3, 4, 5, 6, 7, 8];
        var orphan = new BlockAllocator(8, 2);
        Assert.Equal(0, orphan.Import(tokens, 1, 2, (_, _) => Assert.Fail("an orphan page was filled")));
        Assert.Equal(0, orphan.CachedPages);

        var small = new BlockAllocator(3, 2);
        var held = new List<int>();
        Assert.True(small.TryReserve(held, 2)); // one page referenced by a running sequence
        Assert.Equal(2, small.Import(tokens, 0, 4, (_, _) => { }));
        Assert.Equal(1, small.UsedPages); // only the running sequence's page is referenced
        var prefix = new List<int>();
        Assert.Equal(4, small.TakePrefix(prefix, tokens, 8).Tokens);
        Assert.DoesNotContain(held[0], prefix);
    }

    [Fact]
    public void CachedPrefixPages_CountsLeadingPublishedPages_WithinTheLimit()
    {
        var a = new BlockAllocator(8, 2);
        int[] tokens = [1, 2, 3, 4, 5, 6, 7];
        var table = new List<int>();
        Assert.True(a.TryReserve(table, 6));
        var published = new List<CachedPage>();
        a.Publish(table, tokens, 6, 0, Root, published);
        Assert.Equal(3, published.Count);
        Assert.Equal(a.PageHash(published[0].Hash, tokens, 1), published[1].Hash);
        Assert.Equal(published[0].Hash, published[1].ParentHash);
        Assert.Equal([3, 4], published[1].Tokens);
        Assert.Equal(3, a.CachedPrefixPages(tokens, 7));
        Assert.Equal(2, a.CachedPrefixPages(tokens, 5));
        Assert.Equal(0, a.CachedPrefixPages([9, 2, 3, 4], 4));
        // Published twice (another sequence computed the same prefix): reported once.
        var again = new List<int>();
        Assert.True(a.TryReserve(again, 6));
        var twice = new List<CachedPage>();
        a.Publish(again, tokens, 6, 0, Root, twice);
        Assert.Empty(twice);
    }

    [Fact]
    public void PagesCopiedOutOfOneEngine_AndImportedIntoAnother_GiveTheRecomputedOutput()
    {
        var model = TestModels.Load(TestModels.V3Dir);
        var bytes = 64L * 4 * model.Config.NumHiddenLayers * model.Config.LatentCacheDim * sizeof(float);
        LlmEngine Engine(bool caching, bool record = false) =>
            new(model, new EngineOptions { KvCacheBytes = bytes, PageSize = 4, PrefixCaching = caching, RecordComputedPages = record }, null, null);
        int[] prompt = [.. Enumerable.Range(0, 23).Select(i => 40 + 11 * i % 180)];
        using var source = Engine(caching: true, record: true);
        Generate(source, prompt);
        var pages = source.TakeComputedPages().Take(5).ToList();
        Assert.Equal(5, pages.Count);
        Assert.Equal(Enumerable.Range(0, 5).Select(p => prompt.Skip(4 * p).Take(4)), pages.Select(p => p.Tokens.AsEnumerable()));
        var payloads = pages.Select(p =>
        {
            var payload = new byte[source.Cache.PageBytes];
            source.Cache.ReadPage(p.Page, payload);
            return (ReadOnlyMemory<byte>)payload;
        }).ToList();

        using var plain = Engine(caching: false);
        using var target = Engine(caching: true);
        // Occupy the target's first pages so that imported pages land elsewhere than in the source.
        Generate(target, [.. Enumerable.Range(300, 9)]);
        Assert.Equal(5, target.ImportPages(prompt, 0, payloads));
        Assert.Equal(5, target.CachedPrefixPages(prompt));
        var imported = Generate(target, prompt);
        Assert.Equal(20, target.PrefixHitTokens);
        GreedyStep.AssertSame(Generate(plain, prompt), imported, Tolerance, "imported prefix");
    }

    private static List<GreedyStep> Generate(LlmEngine engine, int[] prompt)
    {
        var seq = engine.Add(prompt, new SamplingParams { MaxTokens = 6, Temperature = 0, Logprobs = 2, IgnoreEos = true });
        var steps = new List<GreedyStep>();
        while (!seq.IsFinished)
            foreach (var u in engine.Step()) steps.Add(new(u.Logprob!.TokenId, u.Logprob.Logprob, u.Logprob.Top.ToDictionary(t => t.TokenId, t => (double)t.Logprob)));
        return steps;
    }
}
