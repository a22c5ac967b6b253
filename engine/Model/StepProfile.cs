using System.Diagnostics;

namespace MoeMesh.Engine.Model;

/// <summary>The parts of a forward step that a <see cref="StepProfile"/> times.</summary>
public enum StepPart
{
    /// <summary>Input norm, the attention projections, rotary embedding, the cache write and attention itself.</summary>
    Attention,

    /// <summary>Post-attention norm and the router (scores, top-k), and the start of a remote dispatch.</summary>
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
/// Wall time per part of the forward pass, summed over steps: the benchmark's profile of a decode step (what a step
/// spends where, to show what limits it). A model times its parts when its <see cref="ComputeOptions.Profile"/> is
/// set, two timestamps a part; otherwise nothing. On the CPU libtorch's ops complete before they return, so wall
/// time is the part's own time; on CUDA (asynchronous) it would show launch costs only.
/// </summary>
public sealed class StepProfile
{
    private readonly long[] _ticks = new long[Enum.GetValues<StepPart>().Length];
    private long _fusedSlices;

    /// <summary>Prefill slices that attended in libtorch's fused scaled-dot-product attention (<see cref="AttentionPlan.Fused"/>).</summary>
    public long FusedSlices => Interlocked.Read(ref _fusedSlices);

    /// <summary>Counts one fused prefill slice.</summary>
    public void AddFusedSlice() => Interlocked.Increment(ref _fusedSlices);

    /// <summary>Times <paramref name="part"/> until the returned value is disposed.</summary>
    public IDisposable Time(StepPart part) => new Section(this, part, Stopwatch.GetTimestamp());

    /// <summary>The time summed per part since the last call, and zero again.</summary>
    public IReadOnlyDictionary<StepPart, TimeSpan> Take() =>
        Enum.GetValues<StepPart>().ToDictionary(p => p, p => Stopwatch.GetElapsedTime(0, Interlocked.Exchange(ref _ticks[(int)p], 0)));

    private sealed class Section(StepProfile owner, StepPart part, long start) : IDisposable
    {
        public void Dispose() => Interlocked.Add(ref owner._ticks[(int)part], Stopwatch.GetTimestamp() - start);
    }
}
