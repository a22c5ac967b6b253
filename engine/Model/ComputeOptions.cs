using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Where the model runs and the floating type of its weights and activations. <paramref name="PackedExperts"/>
/// runs CPU routed experts in the engine's own kernel over weights kept in the checkpoint's type (BF16: half the
/// memory of the float32 copies libtorch computes on; FP8: a quarter) instead of libtorch (--cpu-experts).
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

    /// <summary>What the programs run on the CPU without --cpu-experts and --cpu-dense: the kernels where they are vectorised.</summary>
    public static ComputeOptions CpuDefault => Parse("cpu");

    /// <summary>
    /// Parses --device values (cpu, cuda, cuda:N; CUDA computes in bfloat16) and, for the CPU, --cpu-experts and
    /// --cpu-dense: libtorch, packed, or auto (packed where the CPU has AVX2 and FMA, whose kernels beat libtorch's
    /// float32 copies; the portable path does not).
    /// </summary>
    public static ComputeOptions Parse(string? device, string cpuExperts = "auto", string cpuDense = "auto")
    {
        var experts = Packed("--cpu-experts", cpuExperts);
        var dense = Packed("--cpu-dense", cpuDense);
        var spec = string.IsNullOrWhiteSpace(device) ? "cpu" : device.Trim().ToLowerInvariant();
        if (spec == "cpu") return Cpu with { PackedExperts = experts, PackedDense = dense };
        if (spec == "cuda" || spec.StartsWith("cuda:", StringComparison.Ordinal))
        {
            var index = spec == "cuda" ? 0 : int.TryParse(spec[5..], out var i) && i >= 0 ? i : throw new ArgumentException($"--device '{device}': expected cuda:N");
            if (!torch.cuda.is_available())
                throw new ArgumentException($"--device {spec}: CUDA is not available (install the libtorch-cuda TorchSharp package and an NVIDIA driver)");
            return new ComputeOptions(new Device(DeviceType.CUDA, index), ScalarType.BFloat16);
        }
        throw new ArgumentException($"--device '{device}': expected cpu, cuda or cuda:N");
    }

    private static bool Packed(string option, string value) => value switch
    {
        "packed" => true,
        "libtorch" => false,
        "auto" => Kernels.PackedMatrix.Accelerated,
        _ => throw new ArgumentException($"{option} '{value}': expected auto, libtorch or packed"),
    };
}
