using System.Runtime.InteropServices;
using MoeMesh.Engine.Runtime;

namespace MoeMesh.Engine.Tests.Runtime;

public sealed partial class NativeHeapTests
{
    /// <summary>glibc's mallinfo2: what the heap holds, and hblkhd, the bytes in blocks mapped on their own.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [LibraryImport("libc")]
    private static partial MallInfo2 mallinfo2();

    /// <summary>
    /// After <see cref="NativeHeap.KeepFreedMemory"/>, a 24 MiB block (a prefill chunk's scores or a widened weight)
    /// comes from the heap rather than a mapping of its own, and freeing it leaves the memory with the heap: by
    /// default glibc would map it anew and unmap it on free, faulting its pages in again the next time.
    /// </summary>
    [Fact]
    public unsafe void LargeBlocks_ComeFromTheHeap_AndStayAfterFree()
    {
        Assert.True(OperatingSystem.IsLinux());
        NativeHeap.KeepFreedMemory();
        var mappedBefore = mallinfo2().HBlkHd;
        const int bytes = 24 << 20;
        var block = NativeMemory.Alloc(bytes);
        new Span<byte>(block, bytes).Fill(1);
        // Other threads of the process allocate too: the checks allow them anything smaller than the block.
        var held = mallinfo2();
        Assert.True(held.HBlkHd < mappedBefore + bytes / 2, $"mapped on its own: {mappedBefore} then {held.HBlkHd} bytes in mapped blocks");
        var heapBefore = held.Arena;
        NativeMemory.Free(block);
        var after = mallinfo2().Arena;
        Assert.True(after + bytes / 2 > heapBefore, $"the heap gave the block back: {heapBefore} then {after} bytes");
    }
}
