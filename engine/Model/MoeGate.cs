using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
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

    /// <summary>Chosen expert ids [N, k] (int64) and their weights [N, k] (float32).</summary>
    public (Tensor Ids, Tensor Weights) Route(Tensor x)
    {
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
}
