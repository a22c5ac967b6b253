using System.Runtime.InteropServices;
using MoeMesh.Engine.Runtime;

namespace MoeMesh.Engine.Tests.Runtime;

public sealed unsafe partial class NativeHeapTests
{
    [LibraryImport("libc", SetLastError = true)]
    private static partial int mincore(nint address, nuint length, byte* residency);

    /// <summary>glibc's flag, in the size word before a block, for a block mapped on its own (malloc.c's IS_MMAPPED).</summary>
    private const ulong MappedOnItsOwn = 2;

    /// <summary>
    /// After <see cref="NativeHeap.KeepFreedMemory"/>, a 24 MiB block (a prefill chunk's scores or a widened weight)
    /// comes from the heap, not a mapping of its own, and its pages stay resident after it is freed: by default glibc
    /// maps such a block anew and unmaps it on free, so the next one faults every page in again. Both checks look at
    /// this block only (its header and its own pages), so other tests' allocations running alongside do not matter.
    /// </summary>
    [Fact]
    public void LargeBlocks_ComeFromTheHeap_AndStayResidentAfterFree()
    {
        Assert.True(OperatingSystem.IsLinux());
        NativeHeap.KeepFreedMemory();
        const int bytes = 24 << 20;
        var block = (byte*)NativeMemory.Alloc(bytes);
        Assert.Equal(0ul, ((ulong*)block)[-1] & MappedOnItsOwn);
        new Span<byte>(block, bytes).Fill(1);
        // Whole pages inside the block, past its first (free-list links are written there).
        var page = Environment.SystemPageSize;
        var start = ((nint)block + 2 * page) & ~(nint)(page - 1);
        var end = ((nint)block + bytes) & ~(nint)(page - 1);
        var pages = (int)((end - start) / page);
        NativeMemory.Free(block);
        var residency = new byte[pages];
        fixed (byte* r = residency)
            Assert.True(mincore(start, (nuint)(end - start), r) == 0, $"the block's pages were unmapped (errno {Marshal.GetLastPInvokeError()})");
        Assert.True(residency.All(b => (b & 1) == 1), $"{residency.Count(b => (b & 1) == 0)} of {pages} pages were given back");
    }
}
