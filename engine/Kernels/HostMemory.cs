using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Kernels;

/// <summary>The memory of a contiguous float32 CPU tensor as a span, for the engine's kernels to read and write in place.</summary>
public static unsafe class HostMemory
{
    public static Span<float> Span(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || t.dtype != ScalarType.Float32 || !t.is_contiguous())
            throw new ArgumentException("expected a contiguous float32 CPU tensor", nameof(t));
        if (t.NumberOfElements > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(t), "tensor too large for one span");
        var start = (float*)t.storage<float>().data_ptr() + t.storage_offset();
        return new Span<float>(start, (int)t.NumberOfElements);
    }
}
