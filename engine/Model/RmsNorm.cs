using MoeMesh.Engine.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>RMSNorm computed in float32, as DeepSeek's reference does, cast back to the compute type.</summary>
public sealed class RmsNorm(Tensor weight, double eps)
{
    private readonly Tensor _weight = weight.to(ScalarType.Float32);
    private readonly Scalar _eps = eps.ToScalar();
    private readonly float _epsilon = (float)eps;

    /// <summary>The weight's values on the CPU, read once: the span path runs per token and layer.</summary>
    private float[] HostWeight => _hostWeight ??= _weight.cpu().data<float>().ToArray();
    private float[]? _hostWeight;

    /// <summary>Bytes of the weight held.</summary>
    public long ByteSize => Weights.Bytes(_weight);

    /// <summary>Normalises one float32 row in place, in the engine's loops (the decode kernels' path), as <see cref="Forward"/> computes.</summary>
    public void Forward(Span<float> row)
    {
        var weight = HostWeight;
        var scale = 1f / MathF.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares(row) / row.Length + _epsilon);
        System.Numerics.Tensors.TensorPrimitives.Multiply(row, scale, row);
        System.Numerics.Tensors.TensorPrimitives.Multiply(row, weight, row);
    }

    /// <summary>
    /// Rows up to which a float32 CPU batch is normalised in the engine's loops (the span path, row by row): a decode
    /// step's few rows cost libtorch's six small ops, each a fixed cost larger than the row's math.
    /// </summary>
    public const int LoopRows = Projection.KernelRows;

    public Tensor Forward(Tensor x)
    {
        var width = x.shape[^1];
        if (x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && x.NumberOfElements <= LoopRows * width)
        {
            using var input = x.contiguous();
            var y = input.clone();
            var rows = HostMemory.Span(y);
            for (var r = 0; r < rows.Length; r += (int)width) Forward(rows.Slice(r, (int)width));
            return y;
        }
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var normed = xf * rsqrt(Scalars.Plus(xf.pow(Scalars.Two).mean(new long[] { -1 }, keepdim: true), _eps)) * _weight;
        return normed.to(x.dtype).MoveToOuterDisposeScope();
    }
}
