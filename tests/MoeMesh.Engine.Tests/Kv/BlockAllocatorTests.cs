using MoeMesh.Engine.Kv;

namespace MoeMesh.Engine.Tests.Kv;

public sealed class BlockAllocatorTests
{
    [Fact]
    public void TryReserve_GrowsByWholePages_AndFailsWithoutChange()
    {
        var a = new BlockAllocator(3, 4);
        var table = new List<int>();
        Assert.True(a.TryReserve(table, 5));
        Assert.Equal(2, table.Count);
        Assert.True(a.TryReserve(table, 8));
        Assert.Equal(2, table.Count);
        Assert.False(a.TryReserve(table, 13));
        Assert.Equal(2, table.Count);
        Assert.Equal(1, a.FreePages);
    }

    [Fact]
    public void Slot_MapsPositionsThroughTheBlockTable()
    {
        var a = new BlockAllocator(8, 4);
        var table = new List<int> { 5, 2 };
        Assert.Equal(20, a.Slot(table, 0));
        Assert.Equal(23, a.Slot(table, 3));
        Assert.Equal(8, a.Slot(table, 4));
        Assert.Equal(10, a.Slot(table, 6));
    }
}
