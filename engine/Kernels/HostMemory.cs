using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Kernels;

/// <summary>The memory of a contiguous CPU tensor as a span, for the engine's kernels to read and write in place.</summary>
public static unsafe class HostMemory
{
    public static Span<float> Span(Tensor t) => Span<float>(t, ScalarType.Float32);

    public static Span<long> Longs(Tensor t) => Span<long>(t, ScalarType.Int64);

    private static Span<T> Span<T>(Tensor t, ScalarType dtype) where T : unmanaged
    {
        if (t.device_type != DeviceType.CPU || t.dtype != dtype || !t.is_contiguous())
            throw new ArgumentException($"expected a contiguous {dtype} CPU tensor", nameof(t));
        if (t.NumberOfElements > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(t), "tensor too large for one span");
        var start = (T*)t.storage<T>().data_ptr() + t.storage_offset();
        return new Span<T>(start, (int)t.NumberOfElements);
    }
}
