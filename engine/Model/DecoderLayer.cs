using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>One transformer block: x + attn(norm(x)), then + ffn(norm(x)) with a dense MLP or MoE.</summary>
public sealed class DecoderLayer
{
    private readonly RmsNorm _inputNorm;
    private readonly MlaAttention _attention;
    private readonly RmsNorm _postNorm;
    private readonly SwiGluMlp? _dense;
    private readonly MoeLayer? _moe;

    public int Index { get; }

    public DecoderLayer(ModelConfig c, CheckpointReader r, ComputeOptions o, int index, double softmaxScale, IExpertBackend experts)
    {
        Index = index;
        var p = $"model.layers.{index}";
        _inputNorm = new RmsNorm(Weights.Load(r, $"{p}.input_layernorm.weight", o, c.HiddenSize), c.RmsNormEps);
        _attention = new MlaAttention(c, r, $"{p}.self_attn", o, softmaxScale);
        _postNorm = new RmsNorm(Weights.Load(r, $"{p}.post_attention_layernorm.weight", o, c.HiddenSize), c.RmsNormEps);
        if (c.IsMoeLayer(index)) _moe = new MoeLayer(c, r, $"{p}.mlp", o, index, experts);
        else _dense = new SwiGluMlp(r, $"{p}.mlp", o, c.HiddenSize, c.IntermediateSize);
    }

    public Tensor Forward(Tensor x, ForwardBatch batch, Tensor cos, Tensor sin, Tensor cache, AttentionMode mode)
    {
        using var scope = NewDisposeScope();
        var h = x + _attention.Forward(_inputNorm.Forward(x), batch, cos, sin, cache, mode);
        var normed = _postNorm.Forward(h);
        var ffn = _moe is not null ? _moe.Forward(normed) : _dense!.Forward(normed);
        return (h + ffn).MoveToOuterDisposeScope();
    }
}
