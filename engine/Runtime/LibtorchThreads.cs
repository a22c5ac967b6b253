using TorchSharp;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Lends the cores from libtorch to the engine's kernels for a step. The kernels run on .NET's thread pool; libtorch's
/// OpenMP workers spin for a while after each parallel op, and on two cores a spinning worker takes the core a kernel
/// thread needs (bench --profile: a decode step of 8 sequences 59 ms with libtorch on two threads, 40 ms on one). A
/// step whose heavy products all run in the kernels runs libtorch's remaining small ops on the calling thread alone.
/// </summary>
public static class LibtorchThreads
{
    /// <summary>libtorch on one thread until the scope ends, when <paramref name="when"/>; otherwise nothing changes.</summary>
    public static Scope One(bool when)
    {
        if (!when) return default;
        var before = torch.get_num_threads();
        if (before <= 1) return default;
        torch.set_num_threads(1);
        return new Scope(before);
    }

    /// <summary>Restores libtorch's thread count when it ends.</summary>
    public readonly struct Scope(int before) : IDisposable
    {
        public void Dispose()
        {
            if (before > 1) torch.set_num_threads(before);
        }
    }
}
