using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>RMSNorm computed in float32, as DeepSeek's reference does, cast back to the compute type.</summary>
public sealed class RmsNorm(Tensor weight, double eps)
{
    private readonly Tensor _weight = weight.to(ScalarType.Float32);
    private readonly Scalar _eps = eps.ToScalar();

    /// <summary>Bytes of the weight held.</summary>
    public long ByteSize => Weights.Bytes(_weight);

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var normed = xf * rsqrt(Scalars.Plus(xf.pow(Scalars.Two).mean(new long[] { -1 }, keepdim: true), _eps)) * _weight;
        return normed.to(x.dtype).MoveToOuterDisposeScope();
    }
}
