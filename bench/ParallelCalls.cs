using System.Diagnostics;
using MoeMesh.Engine.Kernels;

namespace MoeMesh.Bench;

/// <summary>
/// What a parallel kernel call costs beyond its work: the same eight items (each a fixed chain of float operations)
/// run on one thread, through Parallel.For and through <see cref="KernelThreads"/>, after a stretch of work on the
/// calling thread alone, as a decode step alternates its parallel kernels with short serial parts. Prints each one's
/// mean time per call, from one run, for items of about 3 and 30 microseconds and serial stretches of about 30
/// microseconds and 3 milliseconds (past <see cref="KernelThreads.SpinMicroseconds"/>: the workers sleep between calls).
/// </summary>
public static class ParallelCalls
{
    private const int Items = 8, Calls = 2000;

    public static void Run()
    {
        Console.WriteLine($"cores: {Environment.ProcessorCount}; {Items} items a call, {Calls} calls each, microseconds a call");
        foreach (var (work, gap) in new[] { (2_000, 20_000), (20_000, 20_000), (2_000, 2_000_000) })
        {
            var slots = new double[Items * 16]; // a cache line apart
            double sink = 0;
            var (serial, dotnet, kernel) = (0L, 0L, 0L);
            for (var call = 0; call < Calls; call++)
            {
                sink += Chain(gap);
                var t0 = Stopwatch.GetTimestamp();
                for (var i = 0; i < Items; i++) slots[i * 16] += Chain(work);
                var t1 = Stopwatch.GetTimestamp();
                sink += Chain(gap);
                var t2 = Stopwatch.GetTimestamp();
                Parallel.For(0, Items, i => slots[i * 16] += Chain(work));
                var t3 = Stopwatch.GetTimestamp();
                sink += Chain(gap);
                var t4 = Stopwatch.GetTimestamp();
                KernelThreads.For(Items, i => slots[i * 16] += Chain(work));
                var t5 = Stopwatch.GetTimestamp();
                (serial, dotnet, kernel) = (serial + t1 - t0, dotnet + t3 - t2, kernel + t5 - t4);
            }
            double Us(long ticks) => ticks * 1e6 / Stopwatch.Frequency / Calls;
            Console.WriteLine($"items of {work} steps after {gap} serial steps: one thread {Us(serial):F1}, Parallel.For {Us(dotnet):F1}, " +
                $"KernelThreads {Us(kernel):F1} ({Us(serial) / Us(kernel):F2}x one thread, {Us(dotnet) / Us(kernel):F2}x Parallel.For){(sink > 0 ? "" : " ")}");
        }
    }

    /// <summary>A dependent chain of <paramref name="steps"/> multiply-adds: a fixed amount of work that no compiler removes.</summary>
    private static double Chain(int steps)
    {
        var a = 1.0;
        for (var i = 0; i < steps; i++) a = a * 1.0000001 + 1e-9;
        return a;
    }
}
