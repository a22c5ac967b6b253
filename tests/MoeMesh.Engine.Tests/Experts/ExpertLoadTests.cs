using System.Diagnostics;
using MoeMesh.Engine.Experts;
using Xunit;

namespace MoeMesh.Engine.Tests.Experts;

public class ExpertLoadTests
{
    [Fact]
    public void Counts_AreSummedOverTheWindow_AndOldBucketsDropOut()
    {
        long now = 0;
        var second = Stopwatch.Frequency;
        var load = new ExpertLoad(layers: 3, experts: 4, TimeSpan.FromSeconds(10), buckets: 3, clock: () => now);
        load.Record(1, [0, 2, 2]);
        now = 12 * second;
        load.Record(1, [2, 3]);
        load.Record(2, [1]);
        load.Record(7, [1]); // not a layer: ignored
        load.Record(2, [9, -1]); // not experts: ignored
        Assert.Equal([1, 0, 3, 1], load.Read()[1]);
        Assert.Equal([0, 1, 0, 0], load.Read()[2]);
        Assert.Equal(TimeSpan.FromSeconds(30), load.Window);
        // 31 s after the first bucket began, it has left the window; the second is still in.
        now = 31 * second;
        Assert.Equal([0, 0, 1, 1], load.Read()[1]);
        // The ring reuses the slot of the first bucket for a new one: its old counts are gone.
        load.Record(1, [0]);
        Assert.Equal([1, 0, 1, 1], load.Read()[1]);
        now = 60 * second;
        Assert.All(load.Read(), l => Assert.All(l, c => Assert.Equal(0, c)));
    }
}
