using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeMesh.Engine.Kernels;
using TorchSharp;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Lends the cores from libtorch to the engine's kernels for a step. The kernels run on their own workers
/// (<see cref="KernelThreads"/>); libtorch's OpenMP workers spin for a while after each parallel op, and on two cores a
/// spinning worker takes the core a kernel thread needs (bench --profile: a decode step of 8 sequences 59 ms with
/// libtorch on two threads, 40 ms on one). A step whose heavy products all run in the kernels runs libtorch's
/// remaining small ops on the calling thread alone, and the kernels' workers spin between its calls; any other step
/// keeps libtorch's threads, and the kernels' workers sleep between calls so as not to spin while libtorch computes.
/// </summary>
public static partial class LibtorchThreads
{
    /// <summary>
    /// OpenMP's wait policy for libtorch's workers, set in the process's environment as the engine's module loads
    /// (before libtorch does; OpenMP reads it once) unless the user set it or GOMP_SPINCOUNT. Passive: a worker sleeps
    /// as soon as a parallel op ends. By default libgomp's workers spin for a while after each op, and in a prefill
    /// chunk, whose projections and experts run in the kernels between libtorch's attention products, the spinning
    /// worker takes a core from the kernels' threads (bench --profile, a 2,048-token prefill: 3,819 ms spinning,
    /// 3,441 passive). Decode steps run libtorch on one thread, where the policy does not apply.
    /// </summary>
    public const string WaitPolicy = "PASSIVE";

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint getenv(string name);

    /// <summary>The process environment's value of <paramref name="name"/> as native code reads it; null when unset or not on Linux.</summary>
    public static string? NativeEnvironment(string name) =>
        OperatingSystem.IsLinux() ? Marshal.PtrToStringUTF8(getenv(name)) : null;

    // A module initializer, not a call each program makes: any engine type may be the first to load libtorch, and
    // OpenMP reads the policy only then.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void SetWaitPolicy()
    {
        if (!OperatingSystem.IsLinux() || NativeEnvironment("OMP_WAIT_POLICY") is not null || NativeEnvironment("GOMP_SPINCOUNT") is not null) return;
        try
        {
            setenv("OMP_WAIT_POLICY", WaitPolicy, 0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    /// <summary>
    /// For one step until the scope ends: when <paramref name="inKernels"/>, libtorch on one thread and the kernels'
    /// workers spinning between calls; otherwise libtorch as it is and the kernels' workers sleeping between calls.
    /// </summary>
    public static Scope ForStep(bool inKernels)
    {
        var spin = KernelThreads.Spin;
        KernelThreads.Spin = inKernels;
        var before = torch.get_num_threads();
        if (!inKernels || before <= 1) return new Scope(0, spin);
        torch.set_num_threads(1);
        return new Scope(before, spin);
    }

    /// <summary>Restores libtorch's thread count and the kernels' spinning when it ends.</summary>
    public readonly struct Scope(int before, bool spin) : IDisposable
    {
        public void Dispose()
        {
            if (before > 1) torch.set_num_threads(before);
            KernelThreads.Spin = spin;
        }
    }
}
