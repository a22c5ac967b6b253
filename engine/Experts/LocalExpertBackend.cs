using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Kernels;
using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Experts;

/// <summary>
/// Routed experts held in this process, computed with tokens grouped per expert: each expert a libtorch SwiGLU in
/// the compute type, or, on the CPU with <see cref="ComputeOptions.PackedExperts"/>, weights kept in the
/// checkpoint's type (BF16 as stored) and a layer's experts in one parallel pass of the engine's own kernel
/// (<see cref="PackedExpertPass"/>).
/// </summary>
public sealed class LocalExpertBackend : IExpertBackend
{
    private readonly Dictionary<(int Layer, int Expert), IDisposable> _experts;
    private readonly int _expertCount;

    /// <summary>Loads the given experts of every MoE layer; nothing else is read from the checkpoint.</summary>
    public LocalExpertBackend(ModelConfig c, CheckpointReader r, ComputeOptions o, IReadOnlyList<int> experts)
        : this(c, r, o, ExpertPlacement.Uniform(c, experts))
    {
    }

    /// <summary>Loads the experts of a placement; nothing else is read from the checkpoint.</summary>
    public LocalExpertBackend(ModelConfig c, CheckpointReader r, ComputeOptions o, ExpertPlacement placement)
        : this(c.NRoutedExperts, placement, placement.Pairs.ToDictionary(p => p, p => LoadExpert(c, r, o, p)))
    {
    }

    private LocalExpertBackend(int expertCount, ExpertPlacement placement, Dictionary<(int, int), IDisposable> experts)
    {
        Runtime.NativeHeap.KeepFreedMemory();
        _expertCount = expertCount;
        Placement = placement;
        _experts = experts;
        _packed = experts.Values.FirstOrDefault() is PackedHolder;
    }

    /// <summary>Whether the experts are held packed for the engine's CPU kernel (all or none are: one ComputeOptions loads them).</summary>
    private readonly bool _packed;

    public ExpertPlacement Placement { get; }

    private static IDisposable LoadExpert(ModelConfig c, CheckpointReader r, ComputeOptions o, (int Layer, int Expert) p) =>
        Packed(o)
            ? new PackedHolder(PackedExpert.Read(r, $"model.layers.{p.Layer}.mlp.experts.{p.Expert}", c.HiddenSize, c.MoeIntermediateSize))
            : new SwiGluMlp(r, $"model.layers.{p.Layer}.mlp.experts.{p.Expert}", o with { PackedDense = false }, c.HiddenSize, c.MoeIntermediateSize);

    /// <summary>Whether experts run in the packed CPU kernel: asked for (--cpu-experts packed), on the CPU in float32.</summary>
    private static bool Packed(ComputeOptions o) => o.Device.type == TorchSharp.DeviceType.CPU && o.DType == ScalarType.Float32 && o.PackedExperts;

    private sealed class PackedHolder(PackedExpert expert) : IDisposable
    {
        public PackedExpert Expert { get; } = expert;

        public void Dispose() => Expert.Dispose();
    }

    /// <summary>A backend holding <paramref name="placement"/>: experts held here are shared, only the others are read from the checkpoint.</summary>
    public LocalExpertBackend Reshape(ModelConfig c, CheckpointReader r, ComputeOptions o, ExpertPlacement placement) =>
        new(_expertCount, placement, placement.Pairs.ToDictionary(p => p, p => _experts.TryGetValue(p, out var held) ? held : LoadExpert(c, r, o, p)));

    /// <summary>Frees the weights of the experts held here that <paramref name="successor"/> does not share.</summary>
    public void DisposeExcept(LocalExpertBackend successor)
    {
        foreach (var (key, expert) in _experts)
        {
            if (!successor._experts.TryGetValue(key, out var kept) || !ReferenceEquals(kept, expert)) expert.Dispose();
        }
    }

    /// <summary>Bytes of expert weights held.</summary>
    public long ByteSize => _experts.Values.Sum(e => e is PackedHolder p ? p.Expert.ByteSize : ((SwiGluMlp)e).ByteSize);

    /// <summary>Computes when completed, so that a caller overlapping micro-batches keeps one order of work for both backends.</summary>
    public IExpertCall Begin(int layer, Tensor hidden, Tensor expertIds, Tensor weights) =>
        new DeferredCall(() => Compute(layer, hidden, expertIds, weights));

    /// <summary>Whether this backend holds the expert of the layer.</summary>
    public bool Holds(int layer, int expert) => _experts.ContainsKey((layer, expert));

    /// <summary>Runs each token's k chosen experts (<paramref name="expertIds"/> [N, k]) and sums them weighted.</summary>
    public Tensor Compute(int layer, Tensor hidden, Tensor expertIds, Tensor weights)
    {
        using var scope = NewDisposeScope();
        var k = expertIds.shape[1];
        var pairTokens = arange(hidden.shape[0], dtype: ScalarType.Int64, device: hidden.device).repeat_interleave(k);
        return ComputePairs(layer, hidden, pairTokens, expertIds.flatten(), weights.flatten()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs (token, expert, weight) pairs: sorts them by expert, runs each expert once on its tokens and
    /// adds the weighted outputs per token, in ascending expert order.
    /// </summary>
    public Tensor ComputePairs(int layer, Tensor hidden, Tensor pairTokens, Tensor pairExperts, Tensor pairWeights)
    {
        if (_packed && hidden.device_type == TorchSharp.DeviceType.CPU && hidden.dtype == ScalarType.Float32)
            return ComputePacked(layer, hidden, pairTokens, pairExperts, pairWeights);
        using var scope = NewDisposeScope();
        var order = pairExperts.argsort();
        var tokenOf = pairTokens.index_select(0, order);
        var sortedWeights = pairWeights.index_select(0, order).to(hidden.dtype).unsqueeze(1);
        var sortedInput = hidden.index_select(0, tokenOf);
        var counts = pairExperts.bincount(null, _expertCount).cpu().data<long>().ToArray();
        var outputs = new List<Tensor>();
        long offset = 0;
        for (var e = 0; e < counts.Length; e++)
        {
            if (counts[e] == 0) continue;
            if (!_experts.TryGetValue((layer, e), out var expert))
                throw new InvalidOperationException($"expert {e} of layer {layer} is not held by this backend");
            var rows = sortedInput.narrow(0, offset, counts[e]);
            outputs.Add(((SwiGluMlp)expert).Forward(rows) * sortedWeights.narrow(0, offset, counts[e]));
            offset += counts[e];
        }
        var combined = zeros_like(hidden);
        combined.index_add_(0, tokenOf, cat(outputs, 0), Scalars.One);
        return combined.MoveToOuterDisposeScope();
    }

    private Tensor ComputePacked(int layer, Tensor hidden, Tensor pairTokens, Tensor pairExperts, Tensor pairWeights)
    {
        var tokens = (int)hidden.shape[0];
        var h = (int)hidden.shape[1];
        using var contiguous = hidden.contiguous();
        using var tokensCpu = pairTokens.to(ScalarType.Int64).cpu().contiguous();
        using var expertsCpu = pairExperts.to(ScalarType.Int64).cpu().contiguous();
        using var weightsCpu = pairWeights.to(ScalarType.Float32).cpu().contiguous();
        var result = empty(tokens, h, ScalarType.Float32);
        PackedExpertPass.Run(HostMemory.Span(contiguous), tokens, h, HostMemory.Longs(tokensCpu), HostMemory.Longs(expertsCpu), HostMemory.Span(weightsCpu),
            e => _experts.TryGetValue((layer, e), out var held) ? ((PackedHolder)held).Expert
                : throw new InvalidOperationException($"expert {e} of layer {layer} is not held by this backend"),
            HostMemory.Span(result));
        return result;
    }

    private sealed class DeferredCall(Func<Tensor> compute) : IExpertCall
    {
        public Tensor Complete() => compute();
    }
}
