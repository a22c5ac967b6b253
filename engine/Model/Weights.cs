using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>Loads [out, in] projection weights in the compute type.</summary>
internal static class Weights
{
    public static Tensor Load(Checkpoint.CheckpointReader reader, string name, ComputeOptions options, params long[] shape) =>
        reader.Read(name, options.Device, options.DType, shape);

    public static Tensor Linear(Tensor x, Tensor weight) => nn.functional.linear(x, weight);

    /// <summary>Bytes a held tensor occupies (0 for none).</summary>
    public static long Bytes(Tensor? t) => t is null ? 0 : t.NumberOfElements * t.ElementSize;
}
