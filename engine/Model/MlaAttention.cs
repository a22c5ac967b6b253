using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Kernels;
using MoeMesh.Engine.Kv;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Multi-head Latent Attention (DeepSeek-V2/V3). The cache holds, per token, the normalised latent
/// (kv_lora_rank) and the rotated rope key (qk_rope_head_dim). Two forms compute the same result:
/// the naive form expands latents into per-head keys and values through kv_b_proj; the absorbed form
/// folds kv_b_proj into the query and the output and reads only the latent cache. Each slice of new
/// tokens takes the cheaper one (see <see cref="AttentionPlan"/>). The context is read tile by tile with
/// an online softmax, so no step holds scores or keys for the whole context.
/// </summary>
public sealed class MlaAttention
{
    private readonly ModelConfig _c;
    private readonly Projection? _wq;
    private readonly Projection? _wqA;
    private readonly RmsNorm? _qNorm;
    private readonly Projection? _wqB;
    private readonly Projection _wkvA;
    private readonly RmsNorm _kvNorm;
    private readonly Projection _kvB;
    private readonly Projection _wo;
    private readonly Scalar _scale;

    /// <summary>Decode tokens attend in the engine's CPU kernel (<see cref="LatentDecodeAttention"/>): with packed weights.</summary>
    private readonly bool _decodeKernel;

    private readonly LatentDecodeAttention.Shape _shape;

    private readonly StepProfile? _profile;

    /// <summary>
    /// Bytes of the weights held. kv_b_proj is held as the other projections are (packed: as the checkpoint stores
    /// it); the naive form expands latents through it as a projection, the absorbed form's libtorch products read a
    /// float32 copy widened for the call, the decode kernel widens a head's rows at a time.
    /// </summary>
    public long ByteSize => (_wq?.ByteSize ?? 0) + (_wqA?.ByteSize ?? 0) + (_qNorm?.ByteSize ?? 0) + (_wqB?.ByteSize ?? 0) + _wkvA.ByteSize
        + _kvNorm.ByteSize + _kvB.ByteSize + _wo.ByteSize;

    public MlaAttention(ModelConfig c, CheckpointReader r, string prefix, ComputeOptions o, double softmaxScale)
    {
        _c = c;
        _scale = softmaxScale.ToScalar();
        _decodeKernel = o.HoldsDensePacked;
        _profile = o.Profile;
        _shape = new LatentDecodeAttention.Shape(c.NumAttentionHeads, c.QkNopeHeadDim, c.QkRopeHeadDim, c.VHeadDim, c.KvLoraRank, (float)softmaxScale);
        var h = c.NumAttentionHeads;
        var d = c.HiddenSize;
        if (c.QLoraRank is { } q)
        {
            _wqA = Projection.Load(r, $"{prefix}.q_a_proj.weight", o, q, d);
            _qNorm = new RmsNorm(Weights.Load(r, $"{prefix}.q_a_layernorm.weight", o, q), c.RmsNormEps);
            _wqB = Projection.Load(r, $"{prefix}.q_b_proj.weight", o, h * c.QkHeadDim, q);
        }
        else
        {
            _wq = Projection.Load(r, $"{prefix}.q_proj.weight", o, h * c.QkHeadDim, d);
        }
        _wkvA = Projection.Load(r, $"{prefix}.kv_a_proj_with_mqa.weight", o, c.LatentCacheDim, d);
        _kvNorm = new RmsNorm(Weights.Load(r, $"{prefix}.kv_a_layernorm.weight", o, c.KvLoraRank), c.RmsNormEps);
        _kvB = Projection.Load(r, $"{prefix}.kv_b_proj.weight", o, h * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank);
        _wo = Projection.Load(r, $"{prefix}.o_proj.weight", o, d, h * c.VHeadDim);
    }

    /// <summary>
    /// The absorbed form's per-head rows of kv_b_proj from row <paramref name="offset"/> of each head's block,
    /// [H, count, latent]: a view, not a copy (each head's rows are contiguous with kv_b's row stride, which batched
    /// GEMMs read as they lie).
    /// </summary>
    private Tensor HeadRows(Tensor kvB, int offset, int count) =>
        kvB.view(_c.NumAttentionHeads, _c.QkNopeHeadDim + _c.VHeadDim, _c.KvLoraRank).narrow(1, offset, count);

    /// <summary>Each head's key rows, [H, nope, latent].</summary>
    private Tensor KeyRows(Tensor kvB) => HeadRows(kvB, 0, _c.QkNopeHeadDim);

    /// <summary>Each head's value rows, [H, value, latent].</summary>
    private Tensor ValueRows(Tensor kvB) => HeadRows(kvB, _c.QkNopeHeadDim, _c.VHeadDim);

    /// <summary>Tiles a prefill slice's own tokens are read in at least (<see cref="PrefillSlice"/>): the finer, the less of the causal triangle's hidden half is computed.</summary>
    private const int DiagonalTiles = 8;

    /// <summary>Attention for the N new tokens of a batch; writes their latents into the cache first.</summary>
    public Tensor Forward(Tensor x, ForwardBatch batch, Tensor cos, Tensor sin, Tensor cache, AttentionPlan plan)
    {
        if (batch.Prefills.Count == 0 && batch.Decodes is { } decodes && DecodesInKernel(cache, plan) && x.dtype == ScalarType.Float32)
            return DecodeStep(x, batch, decodes, cos, sin, cache);
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var h = _c.NumAttentionHeads;
        var q = (_wq is not null ? _wq.Forward(x) : _wqB!.Forward(_qNorm!.Forward(_wqA!.Forward(x))))
            .view(n, h, _c.QkHeadDim);
        var qNope = q.narrow(2, 0, _c.QkNopeHeadDim);
        var qPe = RotaryEmbedding.Apply(q.narrow(2, _c.QkNopeHeadDim, _c.QkRopeHeadDim), cos, sin);

        var kv = _wkvA.Forward(x);
        var latent = _kvNorm.Forward(kv.narrow(1, 0, _c.KvLoraRank));
        var kPe = RotaryEmbedding.Apply(kv.narrow(1, _c.KvLoraRank, _c.QkRopeHeadDim).unsqueeze(1), cos, sin).squeeze(1);
        cache.index_copy_(0, batch.WriteSlots, cat(new[] { latent, kPe }, 1).to(cache.dtype));

        // kv_b_proj as a tensor for the absorbed form's products, made once a call when one needs it (packed: widened in this scope).
        Tensor? kvB = null;
        Tensor KvB() => kvB ??= _kvB.Weight();
        var output = empty(n, h, _c.VHeadDim, dtype: x.dtype, device: x.device);
        foreach (var p in batch.Prefills)
        {
            var context = p.ContextSlots.shape[0];
            var naive = plan.Mode == AttentionMode.Naive
                || (plan.Mode == AttentionMode.Auto && NaiveIsCheaper(_c, p.Length, context));
            var o = naive && context <= plan.FusedContext(h, _c.QkHeadDim + _c.VHeadDim)
                ? FusedSlice(qNope.narrow(0, p.Start, p.Length), qPe.narrow(0, p.Start, p.Length), cache, p)
                : PrefillSlice(qNope.narrow(0, p.Start, p.Length), qPe.narrow(0, p.Start, p.Length), cache, p, naive ? null : KvB(), plan.Tile(h, p.Length));
            output.narrow(0, p.Start, p.Length).copy_(o);
        }
        if (batch.Decodes is { } dg)
        {
            var o = DecodesInKernel(cache, plan)
                ? DecodeInKernel(qNope.index_select(0, dg.Rows), qPe.index_select(0, dg.Rows), cache, dg)
                : AbsorbedDecode(qNope.index_select(0, dg.Rows), qPe.index_select(0, dg.Rows), cache, dg, plan.Tile(h, dg.Rows.shape[0]), KvB());
            output.index_copy_(0, dg.Rows, o);
        }
        return _wo.Forward(output.view(n, h * _c.VHeadDim)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether the naive form costs fewer multiply-adds than the absorbed one for <paramref name="queries"/> new
    /// tokens over <paramref name="context"/> context tokens. Naive expands every context token's latent into per-head
    /// keys and values (T·c·H·(n+v)) and then attends in head space (H·L·T·(n+r+v)); absorbed folds kv_b_proj into the
    /// queries and the output (H·L·n·c + H·L·c·v) and attends in latent space (H·L·T·(2c+r)). Long prefill chunks
    /// favour naive, decode and short chunks absorbed.
    /// </summary>
    public static bool NaiveIsCheaper(ModelConfig c, long queries, long context)
    {
        long h = c.NumAttentionHeads, lat = c.KvLoraRank, r = c.QkRopeHeadDim, nope = c.QkNopeHeadDim, v = c.VHeadDim;
        var naive = context * lat * h * (nope + v) + h * queries * context * (nope + r + v);
        var absorbed = h * queries * nope * lat + h * queries * context * (2 * lat + r) + h * queries * lat * v;
        return naive < absorbed;
    }

    /// <summary>
    /// One sequence's run of L new tokens over its T context tokens (the new ones last), read in tiles of
    /// <paramref name="tile"/> tokens. Naive: each tile's latents are expanded into per-head keys and values.
    /// Absorbed: queries move into latent space and attend over the tile's latents directly. q* [L,H,*].
    /// </summary>
    private Tensor PrefillSlice(Tensor qNope, Tensor qPe, Tensor cache, PrefillSlice p, Tensor? kvB, int tile)
    {
        var naive = kvB is null;
        var h = _c.NumAttentionHeads;
        var lat = _c.KvLoraRank;
        var dtype = qNope.dtype;
        var q = naive
            ? cat(new[] { qNope, qPe }, 2).permute(1, 0, 2) // [H, L, n+r]
            : cat(new[] { matmul(qNope.permute(1, 0, 2), KeyRows(kvB!)), qPe.permute(1, 0, 2) }, 2); // [H, L, c+r]
        var context = p.ContextSlots.shape[0];
        var lastQuery = p.QueryStart + p.Length - 1;
        Tensor? queryPositions = null;
        var softmax = new OnlineSoftmax(_scale);
        // Tiles of the context before the new tokens, which every query sees whole; then tiles of the new tokens
        // themselves, a fraction of the slice each, which only the queries at or past a tile's start attend to: the
        // rest of the causal triangle is skipped rather than computed and masked.
        var diagonal = (int)Math.Min(tile, Math.Max(AttentionPlan.MinTile, p.Length / DiagonalTiles));
        for (long j0 = 0; j0 < context;)
        {
            using var tileScope = NewDisposeScope();
            var t = j0 < p.QueryStart ? Math.Min(tile, p.QueryStart - j0) : Math.Min(diagonal, context - j0);
            var from = Math.Max(0, j0 - p.QueryStart); // the first query that sees this tile
            var ctx = cache.index_select(0, p.ContextSlots.narrow(0, j0, t)).to(dtype); // [t, c+r]
            Tensor keys, values;
            if (naive)
            {
                (keys, values) = PerHead(ctx);
                keys = keys.transpose(1, 2); // [H, n+r, t]
            }
            else
            {
                keys = ctx.t(); // [c+r, t]
                values = ctx.narrow(1, 0, lat); // [t, c]
            }
            // A query at position P sees context tokens 0..P: only tiles reaching past the first query mask anything.
            Tensor? mask = null;
            if (j0 + t - 1 > p.QueryStart + from)
            {
                queryPositions ??= arange(p.QueryStart, lastQuery + 1, dtype: ScalarType.Int64, device: q.device).unsqueeze(1).MoveToOuterDisposeScope();
                mask = arange(j0, j0 + t, dtype: ScalarType.Int64, device: q.device).unsqueeze(0).gt(queryPositions.narrow(0, from, p.Length - from)); // [L - from, t]
            }
            softmax.Add(matmul(q.narrow(1, from, p.Length - from), keys), mask, values, from);
            j0 += t;
        }
        var o = softmax.Result(dtype); // [H, L, v] or [H, L, c]
        if (!naive) o = matmul(o, ValueRows(kvB!).transpose(1, 2));
        return o.permute(1, 0, 2); // [L, H, v]
    }

    /// <summary>
    /// The naive form's per-head keys [H, T, nope + rope] and values [H, T, value] of T cached rows <paramref name="ctx"/>
    /// [T, latent + rope]: the latents through kv_b_proj, the one rope key shared by every head.
    /// </summary>
    private (Tensor Keys, Tensor Values) PerHead(Tensor ctx)
    {
        var t = ctx.shape[0];
        var h = _c.NumAttentionHeads;
        var kvb = _kvB.Forward(ctx.narrow(1, 0, _c.KvLoraRank)).view(t, h, _c.QkNopeHeadDim + _c.VHeadDim);
        var kPe = ctx.narrow(1, _c.KvLoraRank, _c.QkRopeHeadDim).unsqueeze(1).expand(t, h, _c.QkRopeHeadDim);
        var keys = cat(new[] { kvb.narrow(2, 0, _c.QkNopeHeadDim), kPe }, 2).permute(1, 0, 2);
        return (keys, kvb.narrow(2, _c.QkNopeHeadDim, _c.VHeadDim).permute(1, 0, 2));
    }

    /// <summary>
    /// One sequence's run of L new tokens in the naive form through libtorch's fused scaled-dot-product attention, the
    /// whole context at once: keys [H, T, nope + rope] and values [H, T, value] (value width may differ from the key's).
    /// The fused op scales by 1/sqrt(key width), so the queries carry the ratio to MLA's softmax scale (YaRN's mscale
    /// included). A first chunk is causal as the op defines it; a later one masks each query's future. q* [L,H,*].
    /// </summary>
    private Tensor FusedSlice(Tensor qNope, Tensor qPe, Tensor cache, PrefillSlice p)
    {
        var context = p.ContextSlots.shape[0];
        var (keys, values) = PerHead(cache.index_select(0, p.ContextSlots).to(qNope.dtype));
        var q = cat(new[] { qNope, qPe }, 2).permute(1, 0, 2).mul(_scale.ToDouble() * Math.Sqrt(_c.QkHeadDim)); // [H, L, n+r]
        var causal = p.QueryStart == 0 && p.Length == context;
        // Later chunks: query i (at position QueryStart + i) sees context tokens 0 .. QueryStart + i; true takes part.
        using var mask = causal ? null
            : arange(context, dtype: ScalarType.Int64, device: q.device).unsqueeze(0)
                .le(arange(p.QueryStart, p.QueryStart + p.Length, dtype: ScalarType.Int64, device: q.device).unsqueeze(1));
        var o = nn.functional.scaled_dot_product_attention(q, keys, values, mask, 0.0, causal); // [H, L, v]
        _profile?.AddFusedSlice();
        return o.permute(1, 0, 2); // [L, H, v]
    }

    /// <summary>Absorbed form for B decode tokens at once over padded context slot tables, in tiles. q* [B,H,*].</summary>
    private Tensor AbsorbedDecode(Tensor qNope, Tensor qPe, Tensor cache, DecodeGroup dg, int tile, Tensor kvB)
    {
        var b = qNope.shape[0];
        var tmax = dg.ContextSlots.shape[1];
        var lat = _c.KvLoraRank;
        var dtype = qNope.dtype;
        var qLatent = matmul(qNope.transpose(0, 1), KeyRows(kvB)).transpose(0, 1); // [B, H, c]
        var q = cat(new[] { qLatent, qPe }, 2); // [B, H, c+r]
        var softmax = new OnlineSoftmax(_scale);
        for (long j0 = 0; j0 < tmax; j0 += tile)
        {
            using var tileScope = NewDisposeScope();
            var t = Math.Min(tile, tmax - j0);
            var ctx = cache.index_select(0, dg.ContextSlots.narrow(1, j0, t).reshape(-1)).view(b, t, _c.LatentCacheDim).to(dtype);
            // Padding past a shorter sequence's length is masked; tiles within every sequence's context need none.
            var mask = j0 + t > dg.MinLength
                ? arange(j0, j0 + t, dtype: ScalarType.Int64, device: q.device).unsqueeze(0).ge(dg.Lengths).unsqueeze(1) // [B, 1, t]
                : null;
            softmax.Add(matmul(q, ctx.transpose(1, 2)), mask, ctx.narrow(2, 0, lat));
        }
        var oLatent = softmax.Result(dtype); // [B, H, c]
        return matmul(oLatent.transpose(0, 1), ValueRows(kvB).transpose(1, 2)).transpose(0, 1); // [B, H, v]
    }

    /// <summary>
    /// A step of decode tokens only, with packed weights, in the engine's loops end to end: the projections in the
    /// kernel, the norms, rotary and cache write per token on the tensors' memory, attention in
    /// <see cref="LatentDecodeAttention"/>. The same arithmetic as the libtorch path in float32, without its some
    /// forty small ops a layer.
    /// </summary>
    private Tensor DecodeStep(Tensor x, ForwardBatch batch, DecodeGroup dg, Tensor cos, Tensor sin, Tensor cache)
    {
        var n = (int)x.shape[0];
        int h = _c.NumAttentionHeads, qk = _c.QkHeadDim, nope = _c.QkNopeHeadDim, rope = _c.QkRopeHeadDim, lat = _c.KvLoraRank, row = _c.LatentCacheDim;
        using var input = x.contiguous();
        using var angleCos = cos.contiguous();
        using var angleSin = sin.contiguous();
        using var writeSlots = batch.WriteSlots.contiguous();
        using var rows = dg.Rows.contiguous();
        using var slots = dg.ContextSlots.contiguous();
        using var lengths = dg.Lengths.contiguous();
        var xs = HostMemory.Span(input);
        var q = new float[n * h * qk];
        if (_wq is not null) _wq.Multiply(xs, n, q);
        else
        {
            var compressed = new float[n * _wqA!.Outputs];
            _wqA.Multiply(xs, n, compressed);
            for (var i = 0; i < n; i++) _qNorm!.Forward(compressed.AsSpan(i * _wqA.Outputs, _wqA.Outputs));
            _wqB!.Multiply(compressed, n, q);
        }
        var kv = new float[n * row];
        _wkvA.Multiply(xs, n, kv);
        var cacheRows = HostMemory.Span(cache);
        var cosRows = HostMemory.Span(angleCos);
        var sinRows = HostMemory.Span(angleSin);
        var written = HostMemory.Longs(writeSlots);
        for (var i = 0; i < n; i++)
        {
            var c = cosRows.Slice(i * rope / 2, rope / 2);
            var s = sinRows.Slice(i * rope / 2, rope / 2);
            var latent = kv.AsSpan(i * row, row);
            _kvNorm.Forward(latent[..lat]);
            RotaryEmbedding.Apply(latent[lat..], c, s);
            latent.CopyTo(cacheRows.Slice(checked((int)written[i] * row), row));
            for (var head = 0; head < h; head++) RotaryEmbedding.Apply(q.AsSpan((i * h + head) * qk + nope, rope), c, s);
        }
        // The decode group's sequences in its order: b's token is batch row rows[b].
        var order = HostMemory.Longs(rows);
        var b = order.Length;
        var (qNope, qPe) = (new float[b * h * nope], new float[b * h * rope]);
        for (var i = 0; i < b; i++)
            for (var head = 0; head < h; head++)
            {
                var from = q.AsSpan(((int)order[i] * h + head) * qk, qk);
                from[..nope].CopyTo(qNope.AsSpan((i * h + head) * nope, nope));
                from[nope..].CopyTo(qPe.AsSpan((i * h + head) * rope, rope));
            }
        var attended = new float[b * h * _c.VHeadDim];
        LatentDecodeAttention.Run(_shape, b, qNope, qPe, cacheRows, HostMemory.Longs(slots), (int)slots.shape[1], HostMemory.Longs(lengths),
            _kvB.Packed!, attended);
        var output = new float[n * h * _c.VHeadDim];
        for (var i = 0; i < b; i++)
            attended.AsSpan(i * h * _c.VHeadDim, h * _c.VHeadDim).CopyTo(output.AsSpan((int)order[i] * h * _c.VHeadDim, h * _c.VHeadDim));
        var y = empty(n, _c.HiddenSize, ScalarType.Float32);
        _wo.Multiply(output, n, HostMemory.Span(y));
        return y;
    }

    /// <summary>Whether decode tokens attend in <see cref="LatentDecodeAttention"/>: packed weights, a float32 cache, the absorbed form allowed.</summary>
    private bool DecodesInKernel(Tensor cache, AttentionPlan plan) =>
        _decodeKernel && cache.dtype == ScalarType.Float32 && plan.Mode != AttentionMode.Naive;

    /// <summary>The absorbed form for B decode tokens in the engine's kernel, over the float32 cache in place. q* [B,H,*].</summary>
    private Tensor DecodeInKernel(Tensor qNope, Tensor qPe, Tensor cache, DecodeGroup dg)
    {
        var b = qNope.shape[0];
        using var qn = qNope.contiguous();
        using var qp = qPe.contiguous();
        using var slots = dg.ContextSlots.contiguous();
        using var lengths = dg.Lengths.contiguous();
        var o = empty(b, _c.NumAttentionHeads, _c.VHeadDim, dtype: ScalarType.Float32);
        LatentDecodeAttention.Run(_shape, (int)b, HostMemory.Span(qn), HostMemory.Span(qp), HostMemory.Span(cache), HostMemory.Longs(slots),
            (int)slots.shape[1], HostMemory.Longs(lengths), _kvB.Packed!, HostMemory.Span(o));
        return o;
    }

    /// <summary>
    /// Softmax-weighted sum of values over tiles of keys, without holding every tile's scores: a running maximum and
    /// sum per query rescale what earlier tiles added (flash-attention's online softmax). Scores and the running state
    /// are float32; the first tile must leave every query at least one unmasked key (position 0 always is).
    /// </summary>
    private sealed class OnlineSoftmax(Scalar scale)
    {
        private Tensor? _max;
        private Tensor? _sum;
        private Tensor? _acc;

        /// <summary>
        /// Adds one tile: raw scores [.., Q, t] of the queries from <paramref name="queryFrom"/> on (the first tile: all
        /// of them), a mask broadcastable to them (true: hidden), values [.., t, d].
        /// </summary>
        public void Add(Tensor scores, Tensor? mask, Tensor values, long queryFrom = 0)
        {
            var s = scores.to(ScalarType.Float32).mul(scale);
            if (mask is not null) s.masked_fill_(mask, Scalars.NegativeInfinity);
            var tileMax = s.amax(new long[] { -1 }, keepdim: true);
            if (_max is null)
            {
                if (queryFrom != 0) throw new InvalidOperationException("the first tile must cover every query");
                var p = s.sub_(tileMax).exp_();
                _sum = p.sum(-1, keepdim: true).MoveToOuterDisposeScope();
                _acc = matmul(p.to(values.dtype), values).to(ScalarType.Float32).MoveToOuterDisposeScope();
                _max = tileMax.MoveToOuterDisposeScope();
                return;
            }
            // The state's rows of these queries: views, updated in place.
            var queries = s.shape[^2];
            var (runningMax, sum, acc) = queryFrom == 0 && queries == _max.shape[^2]
                ? (_max, _sum!, _acc!)
                : (_max.narrow(-2, queryFrom, queries), _sum!.narrow(-2, queryFrom, queries), _acc!.narrow(-2, queryFrom, queries));
            var max = maximum(runningMax, tileMax);
            var correction = runningMax.sub(max).exp_();
            var probs = s.sub_(max).exp_();
            sum.mul_(correction).add_(probs.sum(-1, keepdim: true), Scalars.One);
            acc.mul_(correction).add_(matmul(probs.to(values.dtype), values), Scalars.One);
            runningMax.copy_(max);
        }

        /// <summary>The normalised result in <paramref name="dtype"/>.</summary>
        public Tensor Result(ScalarType dtype) => _acc!.div(_sum!).to(dtype);
    }
}
