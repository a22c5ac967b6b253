using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// A [outputs, inputs] projection weight, y = x Wᵀ. On the CPU with <see cref="ComputeOptions.PackedDense"/> the
/// weight stays in the checkpoint's type (<see cref="PackedMatrix"/>: BF16 as stored, half the float32 copy; FP8 a
/// quarter) and batches of up to <see cref="KernelRows"/> rows (decode, the LM head's rows) run in the engine's kernel
/// across the cores; so do larger batches (prefill chunks) where the kernel outruns libtorch's GEMM at any size
/// (<see cref="PackedMatrix.FastAtAnyRows"/>: BF16 on AVX-512); elsewhere those widen the weight to float32 for the
/// call and use libtorch's GEMM. Otherwise the weight is a libtorch tensor in the compute type.
/// </summary>
public sealed class Projection : IDisposable
{
    /// <summary>Rows up to which the kernel runs whatever the weight's type; beyond, libtorch's GEMM on widened weights, unless <see cref="PackedMatrix.FastAtAnyRows"/>.</summary>
    public const int KernelRows = 64;

    private readonly Tensor? _weight;
    private readonly PackedMatrix? _packed;

    public int Outputs { get; }
    public int Inputs { get; }

    private Projection(int outputs, int inputs, Tensor? weight, PackedMatrix? packed) =>
        (Outputs, Inputs, _weight, _packed) = (outputs, inputs, weight, packed);

    public static Projection Load(CheckpointReader r, string name, ComputeOptions o, int outputs, int inputs) =>
        o.HoldsDensePacked
            ? new Projection(outputs, inputs, null, PackedMatrix.Read(r, name, outputs, inputs))
            : new Projection(outputs, inputs, Weights.Load(r, name, o, outputs, inputs), null);

    /// <summary>Bytes of the weight held.</summary>
    public long ByteSize => _packed?.ByteSize ?? Weights.Bytes(_weight);

    public void Dispose()
    {
        _weight?.Dispose();
        _packed?.Dispose();
    }

    /// <summary>x [N, inputs] to [N, outputs].</summary>
    public Tensor Forward(Tensor x)
    {
        if (_packed is null) return nn.functional.linear(x, _weight!);
        var rows = x.shape[0];
        if (rows > KernelRows && !_packed.FastAtAnyRows)
        {
            using var widened = Widened();
            return nn.functional.linear(x, widened);
        }
        using var input = x.contiguous();
        var y = empty(rows, Outputs, ScalarType.Float32);
        _packed.MultiplyAll(HostMemory.Span(input), (int)rows, HostMemory.Span(y));
        return y;
    }

    /// <summary>y [rows, outputs] = x [rows, inputs] Wᵀ in the kernel, on spans (a packed weight only).</summary>
    public void Multiply(ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        if (_packed is null) throw new InvalidOperationException("not a packed projection");
        _packed.MultiplyAll(x, rows, y);
    }

    /// <summary>The packed weight, for kernels that read it as held; null when the weight is a tensor.</summary>
    public PackedMatrix? Packed => _packed;

    /// <summary>
    /// The weight as a tensor: the one held, or, packed, a float32 copy widened now, which the current dispose scope
    /// (or the caller) disposes.
    /// </summary>
    public Tensor Weight() => _packed is null ? _weight! : Widened();

    /// <summary>The packed weight widened to a float32 tensor for one call (the caller disposes it).</summary>
    private Tensor Widened()
    {
        var w = empty(Outputs, Inputs, ScalarType.Float32);
        _packed!.WidenAll(HostMemory.Span(w));
        return w;
    }

    /// <summary>Rows of the weight picked by <paramref name="ids"/> (an embedding lookup), in float32 when packed.</summary>
    public Tensor Rows(Tensor ids)
    {
        if (_packed is null) return _weight!.index_select(0, ids);
        using var cpuIds = ids.to(ScalarType.Int64).cpu();
        var picked = cpuIds.data<long>().ToArray();
        var rows = empty(picked.Length, Inputs, ScalarType.Float32);
        var destination = HostMemory.Span(rows);
        for (var i = 0; i < picked.Length; i++)
        {
            var id = (int)picked[i];
            if (id < 0 || id >= Outputs) throw new ArgumentOutOfRangeException(nameof(ids), $"row {id} of {Outputs}");
            _packed.Widen(id, id + 1, destination.Slice(i * Inputs, Inputs));
        }
        return rows;
    }
}
