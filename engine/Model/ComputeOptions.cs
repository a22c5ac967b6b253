using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Where the model runs and the floating type of its weights and activations. <paramref name="PackedExperts"/>
/// runs CPU routed experts in the engine's own kernel over weights kept in the checkpoint's type (BF16: half the
/// memory of the float32 copies libtorch computes on; FP8: a quarter) instead of libtorch (--cpu-experts packed).
/// </summary>
public sealed record ComputeOptions(Device Device, ScalarType DType, bool PackedExperts = false)
{
    /// <summary>
    /// Dense weights (attention projections, shared experts, dense MLPs, embedding and LM head) kept in the
    /// checkpoint's type and computed in the engine's kernel for decode-sized batches (--cpu-dense packed; see
    /// <see cref="Projection"/>).
    /// </summary>
    public bool PackedDense { get; init; }

    /// <summary>Whether dense weights are held packed: asked for, on the CPU in float32.</summary>
    public bool HoldsDensePacked => PackedDense && Device.type == DeviceType.CPU && DType == ScalarType.Float32;

    /// <summary>When set, the model times the parts of each forward pass into it (the benchmark's profile).</summary>
    public StepProfile? Profile { get; init; }

    /// <summary>CPU in float32: these CPUs have no native bf16 units, so bf16 is for storage only.</summary>
    public static ComputeOptions Cpu { get; } = new(torch.CPU, ScalarType.Float32);

    /// <summary>Parses --device values: cpu, cuda, cuda:N. CUDA computes in bfloat16.</summary>
    public static ComputeOptions Parse(string? device, string cpuExperts = "libtorch", string cpuDense = "libtorch")
    {
        if (cpuExperts is not ("libtorch" or "packed")) throw new ArgumentException($"--cpu-experts '{cpuExperts}': expected libtorch or packed");
        if (cpuDense is not ("libtorch" or "packed")) throw new ArgumentException($"--cpu-dense '{cpuDense}': expected libtorch or packed");
        var spec = string.IsNullOrWhiteSpace(device) ? "cpu" : device.Trim().ToLowerInvariant();
        if (spec == "cpu") return Cpu with { PackedExperts = cpuExperts == "packed", PackedDense = cpuDense == "packed" };
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
