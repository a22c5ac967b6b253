using System.Runtime.InteropServices;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Keeps the native heap's freed memory in the process instead of handing it back to the OS after every step.
/// libtorch allocates a step's tensors from glibc's malloc; by default glibc maps blocks over its threshold anew and
/// unmaps them when freed, and trims the heap's free top, so the next step faults every page of its scores and
/// widened weights in again, zero-filled. Under a hypervisor that reclaims freed guest memory each fault is dearer
/// still: bench --profile on a 2-core VM read 20 to 180 ms for the same 512-token prefill slice of attention. Blocks up
/// to glibc's largest threshold (32 MiB) then come from the heap, and up to <see cref="TrimThreshold"/> of free heap
/// stays mapped (but for a thread arena's extra heap that has become entirely free, which glibc unmaps whatever the
/// setting). Linux with glibc only; elsewhere nothing changes.
/// </summary>
public static partial class NativeHeap
{
    /// <summary>glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (malloc.h).</summary>
    private const int MTrimThreshold = -1, MMmapThreshold = -3;

    /// <summary>The largest threshold glibc accepts for mapping a block on its own, on 64-bit systems.</summary>
    private const int MmapThreshold = 32 << 20;

    /// <summary>Free memory the heap keeps before it trims: a few steps' worth of the tensors it reuses.</summary>
    private const int TrimThreshold = 512 << 20;

    private static int _applied;

    [LibraryImport("libc")]
    private static partial int mallopt(int parameter, int value);

    /// <summary>Applies the settings once per process; false where they could not be (not glibc, or refused).</summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref _applied, 1) == 1) return false;
        try
        {
            return mallopt(MMmapThreshold, MmapThreshold) == 1 & mallopt(MTrimThreshold, TrimThreshold) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }
}
