using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// The router, in float32: scores every routed expert, selects top-k (group-limited when configured,
/// with the correction bias used for selection only) and weights the chosen experts by their
/// uncorrected scores, normalised and scaled as the config says.
/// </summary>
public sealed class MoeGate
{
    private readonly ModelConfig _c;
    private readonly Tensor _weight;
    private readonly Tensor? _bias;
    private readonly Scalar _routedScale;

    /// <summary>Bytes of the router's weights held.</summary>
    public long ByteSize => Weights.Bytes(_weight) + Weights.Bytes(_bias);

    public MoeGate(ModelConfig c, CheckpointReader r, string prefix, Device device)
    {
        _c = c;
        _routedScale = c.RoutedScalingFactor.ToScalar();
        _weight = r.Read($"{prefix}.weight", device, ScalarType.Float32, c.NRoutedExperts, c.HiddenSize);
        if (c.TopkMethod == TopkMethod.NoAuxTc)
            _bias = r.Read($"{prefix}.e_score_correction_bias", device, ScalarType.Float32, c.NRoutedExperts);
    }

    /// <summary>
    /// Rows up to which a float32 batch on the CPU is scored and selected in the engine's loops (<see cref="RouteInLoops"/>):
    /// for a decode step's few rows, libtorch's some twenty small ops a layer each cost more than their math.
    /// </summary>
    public const int LoopRows = Projection.KernelRows;

    /// <summary>Chosen expert ids [N, k] (int64) and their weights [N, k] (float32).</summary>
    public (Tensor Ids, Tensor Weights) Route(Tensor x)
    {
        if (x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && x.shape[0] <= LoopRows) return RouteInLoops(x);
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var logits = Weights.Linear(x.to(ScalarType.Float32), _weight);
        var scores = _c.ScoringFunc == ScoringFunc.Sigmoid ? logits.sigmoid() : logits.softmax(-1);
        var choice = _bias is null ? scores : Scalars.Plus(scores, _bias);
        if (_c.TopkMethod != TopkMethod.Greedy && _c.NGroup > 1)
        {
            var grouped = choice.view(n, _c.NGroup, -1);
            var perGroup = grouped.shape[2];
            var groupScores = _c.TopkMethod == TopkMethod.NoAuxTc
                ? grouped.topk((int)Math.Min(2, perGroup), dim: -1).values.sum(-1)
                : grouped.amax(new long[] { -1 });
            var keep = groupScores.topk(_c.TopkGroup, dim: -1).indexes;
            var dropped = ones(n, _c.NGroup, ScalarType.Bool, x.device).scatter_(1, keep, zeros_like(keep, ScalarType.Bool));
            choice = grouped.masked_fill(dropped.unsqueeze(-1), Scalars.NegativeInfinity).view(n, -1);
        }
        var ids = choice.topk(_c.NumExpertsPerTok, dim: -1).indexes;
        var weights = scores.gather(1, ids);
        var k = _c.NumExpertsPerTok;
        var normalise = k > 1 && _c.NormTopkProb;
        if (normalise) weights = weights / Scalars.Plus(weights.sum(-1, keepdim: true), Scalars.Tiny);
        // DeepSeek-V2's modeling code scales only unnormalised weights; V3 scales after normalising.
        if (_c.ModelType == "deepseek_v3" || !normalise) weights = weights * _routedScale;
        return (ids.MoveToOuterDisposeScope(), weights.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// <see cref="Route"/> for a float32 CPU batch: the logits from the same libtorch product, then scoring, selection
    /// and weights row by row in float32, so the same choices and weights to float rounding (libtorch's sigmoid,
    /// softmax and sums may round differently).
    /// </summary>
    private (Tensor Ids, Tensor Weights) RouteInLoops(Tensor x)
    {
        int n = (int)x.shape[0], experts = _c.NRoutedExperts, k = _c.NumExpertsPerTok;
        // The logits in libtorch's one product (the step's only sizeable math here: 256 x 7,168 a row for DeepSeek-V3).
        using var product = Weights.Linear(x, _weight);
        using var logits = product.contiguous();
        var rows = HostMemory.Span(logits);
        var bias = _bias is null ? default : HostMemory.Span(_bias);
        var ids = new long[n * k];
        var weights = new float[n * k];
        var scores = new float[experts];
        var choice = new float[experts];
        var grouped = _c.TopkMethod != TopkMethod.Greedy && _c.NGroup > 1;
        var groupScores = new float[_c.NGroup];
        var kept = new int[_c.TopkGroup];
        var chosen = new int[k];
        var normalise = k > 1 && _c.NormTopkProb;
        var scale = _c.ModelType == "deepseek_v3" || !normalise ? (float)_c.RoutedScalingFactor : 1f;
        for (var i = 0; i < n; i++)
        {
            rows.Slice(i * experts, experts).CopyTo(scores);
            if (_c.ScoringFunc == ScoringFunc.Sigmoid) TensorPrimitives.Sigmoid(scores, scores);
            else TensorPrimitives.SoftMax(scores, scores);
            if (_bias is null) scores.CopyTo(choice, 0);
            else TensorPrimitives.Add(scores, bias, choice);
            if (grouped)
            {
                var per = experts / _c.NGroup;
                for (var g = 0; g < _c.NGroup; g++)
                {
                    var members = choice.AsSpan(g * per, per);
                    if (_c.TopkMethod == TopkMethod.NoAuxTc && per >= 2)
                    {
                        var (first, second) = (float.NegativeInfinity, float.NegativeInfinity);
                        foreach (var v in members)
                            if (v > first) (first, second) = (v, first);
                            else if (v > second) second = v;
                        groupScores[g] = first + second;
                    }
                    else groupScores[g] = TensorPrimitives.Max(members);
                }
                // Groups outside the best topk_group take no part: their experts drop to -inf, as libtorch's masked_fill.
                Largest(groupScores, kept);
                for (var g = 0; g < _c.NGroup; g++)
                    if (Array.IndexOf(kept, g) < 0) choice.AsSpan(g * per, per).Fill(float.NegativeInfinity);
            }
            Largest(choice, chosen);
            var w = weights.AsSpan(i * k, k);
            for (var j = 0; j < k; j++)
            {
                ids[i * k + j] = chosen[j];
                w[j] = scores[chosen[j]];
            }
            if (normalise)
            {
                var sum = 0f;
                foreach (var v in w) sum += v;
                TensorPrimitives.Divide(w, sum + 1e-20f, w);
            }
            if (scale != 1f) TensorPrimitives.Multiply(w, scale, w);
        }
        return (tensor(ids, [n, k]), tensor(weights, [n, k]));
    }

    /// <summary>
    /// The indices of <paramref name="values"/>' largest entries into <paramref name="into"/>, largest first, as topk
    /// returns them; among equal values the lower index first.
    /// </summary>
    private static void Largest(ReadOnlySpan<float> values, Span<int> into)
    {
        for (var j = 0; j < into.Length; j++)
        {
            var best = -1;
            for (var e = 0; e < values.Length; e++)
            {
                if (into[..j].IndexOf(e) >= 0) continue;
                if (best < 0 || values[e] > values[best]) best = e;
            }
            into[j] = best;
        }
    }
}
