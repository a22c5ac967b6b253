using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Dispatch;

/// <summary>Hidden states to and from their wire bytes (little-endian rows of the compute dtype).</summary>
public static class WireTensors
{
    public static WireDType DTypeOf(ComputeOptions o) => o.DType == ScalarType.BFloat16 ? WireDType.BFloat16 : WireDType.Float32;

    public static ScalarType ScalarTypeOf(WireDType d) => d == WireDType.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>The raw bytes of a 2-D tensor, copied to the host.</summary>
    public static byte[] ToBytes(Tensor t)
    {
        using var host = t.cpu().contiguous();
        return host.bytes.ToArray();
    }

    /// <summary>A [rows, cols] tensor of <paramref name="dtype"/> on <paramref name="device"/> holding <paramref name="bytes"/>.</summary>
    public static Tensor FromBytes(ReadOnlySpan<byte> bytes, long rows, long cols, WireDType dtype, Device device)
    {
        var host = empty([rows, cols], ScalarTypeOf(dtype));
        host.bytes = bytes.ToArray();
        if (device.type == TorchSharp.DeviceType.CPU) return host;
        using (host) return host.to(device);
    }
}
