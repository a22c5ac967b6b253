using System.Runtime.InteropServices;
using MoeMesh.Engine.Runtime;

namespace MoeMesh.Engine.Tests.Runtime;

public sealed unsafe class NativeHeapTests
{
    /// <summary>glibc's flag, in the size word before a block, for a block mapped on its own (malloc.c's IS_MMAPPED).</summary>
    private const ulong MappedOnItsOwn = 2;

    /// <summary>
    /// After <see cref="NativeHeap.KeepFreedMemory"/>, a 24 MiB block (a prefill chunk's scores or a widened weight)
    /// comes from the heap, not a mapping of its own that glibc would unmap on free (and the next such block fault in
    /// again). The check reads this block's own header, so other tests' allocations running alongside do not matter.
    /// Whether freed heap memory stays mapped is not checked: glibc unmaps a thread arena's extra heap once it is
    /// entirely free, whatever the trim setting, so the answer depends on what else the arena holds.
    /// </summary>
    [Fact]
    public void LargeBlocks_ComeFromTheHeap()
    {
        Assert.True(OperatingSystem.IsLinux());
        NativeHeap.KeepFreedMemory();
        const int bytes = 24 << 20;
        var block = (byte*)NativeMemory.Alloc(bytes);
        try
        {
            Assert.Equal(0ul, ((ulong*)block)[-1] & MappedOnItsOwn);
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }
}
