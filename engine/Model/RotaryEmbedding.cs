using MoeMesh.Engine.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Rotary embedding of the rope dims, with interleaved pairs (x[2i], x[2i+1]) as in DeepSeek's reference,
/// YaRN frequency correction when rope_scaling is set, and the matching softmax scale.
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly Tensor _cos;
    private readonly Tensor _sin;

    public int MaxPositions { get; }

    /// <summary>1/sqrt(qk_head_dim), times YaRN's mscale² when rope scaling is on.</summary>
    public double SoftmaxScale { get; }

    public RotaryEmbedding(ModelConfig config, Device device)
    {
        MaxPositions = config.MaxPositionEmbeddings;
        var invFreq = InverseFrequencies(config);
        var attentionScale = 1.0;
        SoftmaxScale = 1.0 / Math.Sqrt(config.QkHeadDim);
        if (config.RopeScaling is { } y)
        {
            attentionScale = YarnScaling.GetMscale(y.Factor, y.Mscale) / YarnScaling.GetMscale(y.Factor, y.MscaleAllDim);
            if (y.MscaleAllDim != 0)
            {
                var m = YarnScaling.GetMscale(y.Factor, y.MscaleAllDim);
                SoftmaxScale *= m * m;
            }
        }
        using var positions = arange(MaxPositions, ScalarType.Float64);
        using var freqs = tensor(invFreq, ScalarType.Float64);
        using var angles = outer(positions, freqs);
        _cos = (angles.cos() * attentionScale).to(ScalarType.Float32, device);
        _sin = (angles.sin() * attentionScale).to(ScalarType.Float32, device);
    }

    /// <summary>Per-pair inverse frequencies; with YaRN, a ramp between interpolated and original frequencies.</summary>
    public static double[] InverseFrequencies(ModelConfig config)
    {
        var dim = config.QkRopeHeadDim;
        var b = config.RopeTheta;
        var extra = Enumerable.Range(0, dim / 2).Select(i => 1.0 / Math.Pow(b, 2.0 * i / dim)).ToArray();
        if (config.RopeScaling is not { } y) return extra;
        var low = Math.Max(Math.Floor(CorrectionDim(y.BetaFast, dim, b, y.OriginalMaxPositionEmbeddings)), 0);
        var high = Math.Min(Math.Ceiling(CorrectionDim(y.BetaSlow, dim, b, y.OriginalMaxPositionEmbeddings)), dim - 1);
        if (low == high) high += 0.001;
        var result = new double[dim / 2];
        for (var i = 0; i < dim / 2; i++)
        {
            var ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            var keepOriginal = 1 - ramp;
            result[i] = extra[i] / y.Factor * (1 - keepOriginal) + extra[i] * keepOriginal;
        }
        return result;
    }

    private static double CorrectionDim(double rotations, int dim, double b, int maxPositions) =>
        dim * Math.Log(maxPositions / (rotations * 2 * Math.PI)) / (2 * Math.Log(b));

    /// <summary>cos and sin tables for the given positions, shaped [N, rope/2].</summary>
    public (Tensor Cos, Tensor Sin) Angles(Tensor positions) =>
        (_cos.index_select(0, positions), _sin.index_select(0, positions));

    /// <summary>Rotates one token's rope dims in place in interleaved pairs, as <see cref="Apply"/> does; cos/sin are its [rope/2] angles.</summary>
    public static void Apply(Span<float> x, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        for (var i = 0; i < cos.Length; i++)
        {
            var (x0, x1) = (x[2 * i], x[2 * i + 1]);
            x[2 * i] = x0 * cos[i] - x1 * sin[i];
            x[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
        }
    }

    /// <summary>Rotates x [N, ..., rope] in interleaved pairs; cos/sin are [N, rope/2].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var pairs = x.to(ScalarType.Float32).reshape(shape[0], -1, shape[^1] / 2, 2);
        var x0 = pairs.select(-1, 0);
        var x1 = pairs.select(-1, 1);
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        var rotated = stack(new[] { x0 * c - x1 * s, Scalars.Plus(x0 * s, x1 * c) }, -1);
        return rotated.reshape(shape).to(x.dtype).MoveToOuterDisposeScope();
    }
}
