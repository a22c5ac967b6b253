using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Kv;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Multi-head Latent Attention (DeepSeek-V2/V3). The cache holds, per token, the normalised latent
/// (kv_lora_rank) and the rotated rope key (qk_rope_head_dim). Prefill uses the naive form
/// (keys and values expanded through kv_b_proj); decode uses the absorbed form (kv_b_proj folded
/// into the query and the output), which reads only the latent cache.
/// </summary>
public sealed class MlaAttention
{
    private readonly ModelConfig _c;
    private readonly Tensor? _wq;
    private readonly Tensor? _wqA;
    private readonly RmsNorm? _qNorm;
    private readonly Tensor? _wqB;
    private readonly Tensor _wkvA;
    private readonly RmsNorm _kvNorm;
    private readonly Tensor _wkvB;
    private readonly Tensor _wUk;
    private readonly Tensor _wUv;
    private readonly Tensor _wo;
    private readonly Scalar _scale;

    public MlaAttention(ModelConfig c, CheckpointReader r, string prefix, ComputeOptions o, double softmaxScale)
    {
        _c = c;
        _scale = softmaxScale.ToScalar();
        var h = c.NumAttentionHeads;
        var d = c.HiddenSize;
        if (c.QLoraRank is { } q)
        {
            _wqA = Weights.Load(r, $"{prefix}.q_a_proj.weight", o, q, d);
            _qNorm = new RmsNorm(Weights.Load(r, $"{prefix}.q_a_layernorm.weight", o, q), c.RmsNormEps);
            _wqB = Weights.Load(r, $"{prefix}.q_b_proj.weight", o, h * c.QkHeadDim, q);
        }
        else
        {
            _wq = Weights.Load(r, $"{prefix}.q_proj.weight", o, h * c.QkHeadDim, d);
        }
        _wkvA = Weights.Load(r, $"{prefix}.kv_a_proj_with_mqa.weight", o, c.LatentCacheDim, d);
        _kvNorm = new RmsNorm(Weights.Load(r, $"{prefix}.kv_a_layernorm.weight", o, c.KvLoraRank), c.RmsNormEps);
        _wkvB = Weights.Load(r, $"{prefix}.kv_b_proj.weight", o, h * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank);
        var perHead = _wkvB.view(h, c.QkNopeHeadDim + c.VHeadDim, c.KvLoraRank);
        _wUk = perHead.narrow(1, 0, c.QkNopeHeadDim).contiguous();
        _wUv = perHead.narrow(1, c.QkNopeHeadDim, c.VHeadDim).contiguous();
        _wo = Weights.Load(r, $"{prefix}.o_proj.weight", o, d, h * c.VHeadDim);
    }

    /// <summary>Attention for the N new tokens of a batch; writes their latents into the cache first.</summary>
    public Tensor Forward(Tensor x, ForwardBatch batch, Tensor cos, Tensor sin, Tensor cache, AttentionMode mode)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var h = _c.NumAttentionHeads;
        var q = (_wq is not null ? Weights.Linear(x, _wq) : Weights.Linear(_qNorm!.Forward(Weights.Linear(x, _wqA!)), _wqB!))
            .view(n, h, _c.QkHeadDim);
        var qNope = q.narrow(2, 0, _c.QkNopeHeadDim);
        var qPe = RotaryEmbedding.Apply(q.narrow(2, _c.QkNopeHeadDim, _c.QkRopeHeadDim), cos, sin);

        var kv = Weights.Linear(x, _wkvA);
        var latent = _kvNorm.Forward(kv.narrow(1, 0, _c.KvLoraRank));
        var kPe = RotaryEmbedding.Apply(kv.narrow(1, _c.KvLoraRank, _c.QkRopeHeadDim).unsqueeze(1), cos, sin).squeeze(1);
        cache.index_copy_(0, batch.WriteSlots, cat(new[] { latent, kPe }, 1).to(cache.dtype));

        var output = empty(n, h, _c.VHeadDim, dtype: x.dtype, device: x.device);
        foreach (var p in batch.Prefills)
        {
            var ctx = cache.index_select(0, p.ContextSlots).to(x.dtype);
            var qs = qNope.narrow(0, p.Start, p.Length);
            var ps = qPe.narrow(0, p.Start, p.Length);
            var o = mode == AttentionMode.Absorbed
                ? AbsorbedSlice(qs, ps, ctx, p.CausalMask)
                : NaiveSlice(qs, ps, ctx, p.CausalMask);
            output.narrow(0, p.Start, p.Length).copy_(o);
        }
        if (batch.Decodes is { } dg)
        {
            var o = AbsorbedDecode(qNope.index_select(0, dg.Rows), qPe.index_select(0, dg.Rows), cache, dg);
            output.index_copy_(0, dg.Rows, o);
        }
        return Weights.Linear(output.view(n, h * _c.VHeadDim), _wo).MoveToOuterDisposeScope();
    }

    /// <summary>Naive form: expand the latent into per-head keys and values. q* [L,H,*], ctx [T, c+r].</summary>
    private Tensor NaiveSlice(Tensor qNope, Tensor qPe, Tensor ctx, Tensor mask)
    {
        var t = ctx.shape[0];
        var h = _c.NumAttentionHeads;
        var kvb = Weights.Linear(ctx.narrow(1, 0, _c.KvLoraRank), _wkvB).view(t, h, _c.QkNopeHeadDim + _c.VHeadDim);
        var kNope = kvb.narrow(2, 0, _c.QkNopeHeadDim);
        var v = kvb.narrow(2, _c.QkNopeHeadDim, _c.VHeadDim);
        var kPe = ctx.narrow(1, _c.KvLoraRank, _c.QkRopeHeadDim).unsqueeze(1).expand(t, h, _c.QkRopeHeadDim);
        var k = cat(new[] { kNope, kPe }, 2);
        var qFull = cat(new[] { qNope, qPe }, 2);
        var scores = matmul(qFull.permute(1, 0, 2), k.permute(1, 2, 0)); // [H, L, T]
        var probs = Softmax(scores, mask);
        return matmul(probs, v.permute(1, 0, 2)).permute(1, 0, 2); // [L, H, v]
    }

    /// <summary>Absorbed form for one slice: attend over the latent directly. q* [L,H,*], ctx [T, c+r].</summary>
    private Tensor AbsorbedSlice(Tensor qNope, Tensor qPe, Tensor ctx, Tensor mask)
    {
        var qLatent = matmul(qNope.permute(1, 0, 2), _wUk).permute(1, 0, 2); // [L, H, c]
        var qFull = cat(new[] { qLatent, qPe }, 2).permute(1, 0, 2); // [H, L, c+r]
        var scores = matmul(qFull, ctx.t()); // [H, L, T]
        var probs = Softmax(scores, mask);
        var oLatent = matmul(probs, ctx.narrow(1, 0, _c.KvLoraRank)); // [H, L, c]
        return matmul(oLatent, _wUv.transpose(1, 2)).permute(1, 0, 2); // [L, H, v]
    }

    /// <summary>Absorbed form for B decode tokens at once over padded contexts. q* [B,H,*].</summary>
    private Tensor AbsorbedDecode(Tensor qNope, Tensor qPe, Tensor cache, DecodeGroup dg)
    {
        var b = qNope.shape[0];
        var tmax = dg.ContextSlots.shape[1];
        var ctx = cache.index_select(0, dg.ContextSlots.flatten()).view(b, tmax, _c.LatentCacheDim).to(qNope.dtype);
        var qLatent = matmul(qNope.transpose(0, 1), _wUk).transpose(0, 1); // [B, H, c]
        var qFull = cat(new[] { qLatent, qPe }, 2); // [B, H, c+r]
        var scores = matmul(qFull, ctx.transpose(1, 2)); // [B, H, Tmax]
        var probs = Softmax(scores, dg.PaddingMask);
        var oLatent = matmul(probs, ctx.narrow(2, 0, _c.KvLoraRank)); // [B, H, c]
        return matmul(oLatent.transpose(0, 1), _wUv.transpose(1, 2)).transpose(0, 1); // [B, H, v]
    }

    private Tensor Softmax(Tensor scores, Tensor mask) =>
        Scalars.Plus(scores.to(ScalarType.Float32) * _scale, mask).softmax(-1).to(scores.dtype);
}
