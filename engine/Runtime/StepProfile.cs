using System.Diagnostics;

namespace MoeMesh.Engine.Runtime;

/// <summary>The parts of a forward step that <see cref="StepProfile"/> times.</summary>
public enum StepPart
{
    /// <summary>Input norm, the attention projections, rotary embedding, the cache write and attention itself.</summary>
    Attention,

    /// <summary>Post-attention norm and the router (scores, top-k).</summary>
    Router,

    /// <summary>The routed experts: the in-process computation, or the wait for expert nodes.</summary>
    RoutedExperts,

    /// <summary>The shared experts.</summary>
    SharedExperts,

    /// <summary>The dense MLP of the first layers.</summary>
    DenseMlp,

    /// <summary>The final norm and the LM head.</summary>
    LmHead,
}

/// <summary>
/// Wall time per part of the forward pass, summed over steps, for the benchmark's profile of a decode step (what
/// a step spends where, to show what limits it). Off unless a benchmark turns it on; then each part costs two
/// timestamps. On the CPU libtorch's ops complete before they return, so wall time is the part's own time; on CUDA
/// (asynchronous) the figures would only show launch costs, so the benchmark profiles the CPU.
/// </summary>
public static class StepProfile
{
    private static readonly long[] Ticks = new long[Enum.GetValues<StepPart>().Length];

    public static bool Enabled { get; set; }

    /// <summary>Times <paramref name="part"/> until the returned value is disposed (nothing when profiling is off).</summary>
    public static Section Time(StepPart part) => new(part, Enabled ? Stopwatch.GetTimestamp() : 0);

    /// <summary>The time summed per part since the last call, and zero again.</summary>
    public static IReadOnlyDictionary<StepPart, TimeSpan> Take() =>
        Enum.GetValues<StepPart>().ToDictionary(p => p, p => Stopwatch.GetElapsedTime(0, Interlocked.Exchange(ref Ticks[(int)p], 0)));

    public readonly struct Section(StepPart part, long start) : IDisposable
    {
        public void Dispose()
        {
            if (start != 0) Interlocked.Add(ref Ticks[(int)part], Stopwatch.GetTimestamp() - start);
        }
    }
}
