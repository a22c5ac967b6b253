using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// One transformer block: x + attn(norm(x)), then + ffn(norm(x)) with a dense MLP or MoE. It runs in two
/// halves so that a step split into micro-batches can overlap one's expert dispatch with the other's attention.
/// </summary>
public sealed class DecoderLayer
{
    private readonly RmsNorm _inputNorm;
    private readonly MlaAttention _attention;
    private readonly RmsNorm _postNorm;
    private readonly SwiGluMlp? _dense;
    private readonly MoeLayer? _moe;
    private readonly StepProfile? _profile;

    /// <summary>The first half's results the second half needs.</summary>
    public sealed record Step(Tensor H, Tensor Normed, MoeLayer.Step? Moe);

    public int Index { get; }

    /// <summary>Bytes of the weights held, the routed experts' left out (the expert backend holds them).</summary>
    public long ByteSize => _inputNorm.ByteSize + _attention.ByteSize + _postNorm.ByteSize + (_dense?.ByteSize ?? 0) + (_moe?.ByteSize ?? 0);

    public DecoderLayer(ModelConfig c, CheckpointReader r, ComputeOptions o, int index, double softmaxScale, IExpertBackend experts)
    {
        Index = index;
        _profile = o.Profile;
        var p = $"model.layers.{index}";
        _inputNorm = new RmsNorm(Weights.Load(r, $"{p}.input_layernorm.weight", o, c.HiddenSize), c.RmsNormEps);
        _attention = new MlaAttention(c, r, $"{p}.self_attn", o, softmaxScale);
        _postNorm = new RmsNorm(Weights.Load(r, $"{p}.post_attention_layernorm.weight", o, c.HiddenSize), c.RmsNormEps);
        if (c.IsMoeLayer(index)) _moe = new MoeLayer(c, r, $"{p}.mlp", o, index, experts);
        else _dense = new SwiGluMlp(r, $"{p}.mlp", o, c.HiddenSize, c.IntermediateSize);
    }

    /// <summary>Attention, post-attention norm and, on MoE layers, routing plus the start of the expert call.</summary>
    public Step Begin(Tensor x, ForwardBatch batch, Tensor cos, Tensor sin, Tensor cache, AttentionPlan plan)
    {
        using var scope = NewDisposeScope();
        Tensor h, normed;
        using (_profile?.Time(StepPart.Attention))
            h = Scalars.Plus(x, _attention.Forward(_inputNorm.Forward(x), batch, cos, sin, cache, plan));
        MoeLayer.Step? moe;
        using (_profile?.Time(StepPart.Router))
        {
            normed = _postNorm.Forward(h);
            moe = _moe?.Begin(normed);
        }
        // Only what the second half reads outlives this scope; attention's intermediates go now.
        h.MoveToOuterDisposeScope();
        normed.MoveToOuterDisposeScope();
        moe?.Ids.MoveToOuterDisposeScope();
        moe?.Weights.MoveToOuterDisposeScope();
        return new Step(h, normed, moe);
    }

    /// <summary>The feed-forward half: dense MLP, or shared experts plus the routed experts' result.</summary>
    public Tensor Finish(Step step)
    {
        using var scope = NewDisposeScope();
        Tensor ffn;
        if (step.Moe is { } moe) ffn = _moe!.Finish(moe);
        else
            using (_profile?.Time(StepPart.DenseMlp))
                ffn = _dense!.Forward(step.Normed);
        return Scalars.Plus(step.H, ffn).MoveToOuterDisposeScope();
    }

    public Tensor Forward(Tensor x, ForwardBatch batch, Tensor cos, Tensor sin, Tensor cache, AttentionPlan plan)
    {
        using var scope = NewDisposeScope();
        return Finish(Begin(x, batch, cos, sin, cache, plan)).MoveToOuterDisposeScope();
    }
}
