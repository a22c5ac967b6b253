using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Where the model runs and the floating type of its weights and activations. <paramref name="LibTorchExperts"/>
/// runs CPU routed experts through libtorch on float32 copies of their weights instead of the engine's kernel over
/// the checkpoint's types (for comparing the two).
/// </summary>
public sealed record ComputeOptions(Device Device, ScalarType DType, bool LibTorchExperts = false)
{
    /// <summary>CPU in float32: these CPUs have no native bf16 units, so bf16 is for storage only.</summary>
    public static ComputeOptions Cpu { get; } = new(torch.CPU, ScalarType.Float32);

    /// <summary>Parses --device values: cpu, cuda, cuda:N. CUDA computes in bfloat16.</summary>
    public static ComputeOptions Parse(string? device)
    {
        var spec = string.IsNullOrWhiteSpace(device) ? "cpu" : device.Trim().ToLowerInvariant();
        if (spec == "cpu") return Cpu;
        if (spec == "cuda" || spec.StartsWith("cuda:", StringComparison.Ordinal))
        {
            var index = spec == "cuda" ? 0 : int.TryParse(spec[5..], out var i) && i >= 0 ? i : throw new ArgumentException($"--device '{device}': expected cuda:N");
            if (!torch.cuda.is_available())
                throw new ArgumentException($"--device {spec}: CUDA is not available (install the libtorch-cuda TorchSharp package and an NVIDIA driver)");
            return new ComputeOptions(new Device(DeviceType.CUDA, index), ScalarType.BFloat16);
        }
        throw new ArgumentException($"--device '{device}': expected cpu, cuda or cuda:N");
    }
}
