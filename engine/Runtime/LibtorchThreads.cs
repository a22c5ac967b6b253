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
public static class LibtorchThreads
{
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
