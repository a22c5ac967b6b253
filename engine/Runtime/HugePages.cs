using System.Runtime.InteropServices;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Asks Linux to back long-lived weight memory with 2 MiB pages (madvise MADV_HUGEPAGE) before it is first written.
/// Decode streams every weight once a step, and on 4 KiB pages a stream pays a TLB miss every 4 KiB and the
/// hardware prefetcher restarts at every page; the expert pass reads in pieces of 128 KiB that two threads take in
/// turn, which suffers most (bench --kernel-rates --expert-pass compares the two page sizes). Only whole 2 MiB pages
/// inside the range are advised; elsewhere, or where the kernel refuses (transparent huge pages set to never),
/// memory stays as it is.
/// </summary>
public static partial class HugePages
{
    public const long Size = 2 << 20;

    private const int MadvHugepage = 14;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(nint address, nuint length, int advice);

    /// <summary>Advises the whole 2 MiB pages within [<paramref name="address"/>, + <paramref name="bytes"/>); false when none were.</summary>
    public static bool Advise(nint address, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes < Size) return false;
        var start = (address + (nint)Size - 1) & ~((nint)Size - 1);
        var end = (address + (nint)bytes) & ~((nint)Size - 1);
        if (end <= start) return false;
        try
        {
            return madvise(start, (nuint)(end - start), MadvHugepage) == 0;
        }
        catch (DllNotFoundException)
        {
            return false;
        }
    }
}
