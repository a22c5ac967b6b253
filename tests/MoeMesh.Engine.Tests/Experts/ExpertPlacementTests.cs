using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using Xunit;

namespace MoeMesh.Engine.Tests.Experts;

public class ExpertPlacementTests
{
    [Theory]
    [InlineData(16, 1)]
    [InlineData(16, 3)]
    [InlineData(16, 5)]
    [InlineData(256, 7)]
    [InlineData(3, 5)]
    public void Shards_PartitionTheExpertsIntoNearEqualContiguousSlices(int experts, int shards)
    {
        var slices = Enumerable.Range(0, shards).Select(i => ExpertSet.Parse(ExpertSet.ShardSpec(i, shards), experts)).ToArray();
        Assert.Equal(Enumerable.Range(0, experts), slices.SelectMany(s => s).Order());
        Assert.True(slices.Max(s => s.Count) - slices.Min(s => s.Count) <= 1);
        Assert.All(slices.Where(s => s.Count > 0), s => Assert.Equal(s.Count - 1, s[^1] - s[0]));
    }

    [Fact]
    public void Shards_CombineWithOtherParts() =>
        Assert.Equal([0, 1, 2, 3, 12, 13, 14, 15], ExpertSet.Parse("shard:0/4,shard:3/4", 16));

    [Theory]
    [InlineData("shard:4/4")]
    [InlineData("shard:-1/4")]
    [InlineData("shard:1/0")]
    [InlineData("shard:1")]
    [InlineData("shard:a/b")]
    public void Shards_RejectBadSpecs(string spec) => Assert.Throws<ArgumentException>(() => ExpertSet.Parse(spec, 16));

    [Fact]
    public void Document_StarCoversTheMoeLayersNotNamed_AndCarriesItsGeneration()
    {
        var c = ModelConfig.Load(Path.Combine(TestModels.V3Dir, "config.json"));
        var moe = Enumerable.Range(0, c.NumHiddenLayers).Where(c.IsMoeLayer).ToArray();
        Assert.True(moe.Length >= 2);
        var p = ExpertPlacement.Parse(c, """{"generation": 7, "layers": {"LAYER": [1], "*": "shard:1/2"}}""".Replace("LAYER", moe[0].ToString()));
        Assert.Equal(7, p.Generation);
        Assert.Equal([1], p.Layers[moe[0]]);
        var half = Enumerable.Range(c.NRoutedExperts / 2, c.NRoutedExperts - c.NRoutedExperts / 2);
        Assert.All(moe.Skip(1), l => Assert.Equal(half, p.Layers[l]));
        Assert.Equal(moe, p.Layers.Keys);
        Assert.Null(ExpertPlacement.Parse(c, """{"layers": {}}""").Generation);
    }

    [Theory]
    [InlineData("""{"generation": -1, "layers": {}}""")]
    [InlineData("""{"generation": "3", "layers": {}}""")]
    [InlineData("""{"layers": {"*": 3}}""")]
    public void Document_RejectsBadGenerationsAndStars(string json)
    {
        var c = ModelConfig.Load(Path.Combine(TestModels.V3Dir, "config.json"));
        Assert.Throws<ArgumentException>(() => ExpertPlacement.Parse(c, json));
    }
}
