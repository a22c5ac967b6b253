using System.Buffers;
using System.Numerics.Tensors;

namespace MoeMesh.Engine.Kernels;

/// <summary>
/// MLA's absorbed attention for the decode tokens of a batch on the CPU, in the engine's own loops: per sequence,
/// each head's query moves into latent space through kv_b_proj's key rows, attends over the sequence's cached
/// latents and rope keys in tiles with an online softmax, and its latent output comes back through kv_b_proj's value
/// rows. It does in one pass, across the cores, what libtorch does in some twenty small ops a layer, each a fixed
/// cost larger than its math at decode sizes; memory is one tile of scores per head, whatever the context.
/// </summary>
public static unsafe class LatentDecodeAttention
{
    /// <summary>Context tokens a tile: their cached rows stay in the core's cache while every head reads them.</summary>
    private const int Tile = 128;

    /// <summary>The shapes: heads, the nope, rope and value widths of a head, and the latent width.</summary>
    public readonly record struct Shape(int Heads, int Nope, int Rope, int Value, int Latent, float Scale)
    {
        /// <summary>Floats of a cache row: the latent, then the rope key.</summary>
        public int Row => Latent + Rope;
    }

    /// <summary>
    /// <paramref name="qNope"/> [B, H, nope] and <paramref name="qPe"/> [B, H, rope] (rotated); <paramref name="cache"/>
    /// [slots, latent + rope]; <paramref name="slots"/> [B, <paramref name="maxContext"/>] and <paramref name="lengths"/>
    /// [B]: sequence b attends to its first lengths[b] slots; <paramref name="kvB"/> kv_b_proj [H * (nope + value),
    /// latent]. Writes <paramref name="output"/> [B, H, value].
    /// </summary>
    public static void Run(Shape s, int sequences, ReadOnlySpan<float> qNope, ReadOnlySpan<float> qPe, ReadOnlySpan<float> cache,
        ReadOnlySpan<long> slots, int maxContext, ReadOnlySpan<long> lengths, ReadOnlySpan<float> kvB, Span<float> output)
    {
        if (qNope.Length < sequences * s.Heads * s.Nope || qPe.Length < sequences * s.Heads * s.Rope || slots.Length < sequences * maxContext
            || lengths.Length < sequences || kvB.Length < s.Heads * (s.Nope + s.Value) * s.Latent || output.Length < sequences * s.Heads * s.Value)
            throw new ArgumentException("spans do not match the shape");
        for (var b = 0; b < sequences; b++)
            if (lengths[b] < 1 || lengths[b] > maxContext) throw new ArgumentOutOfRangeException(nameof(lengths), $"sequence {b}: context {lengths[b]} of {maxContext}");
        // Sequences split across the cores; with fewer sequences than cores, their heads are split too.
        var groups = sequences >= Environment.ProcessorCount ? 1 : Math.Min(s.Heads, Environment.ProcessorCount);
        var items = sequences * groups;
        fixed (float* qn = qNope, qp = qPe, kv = cache, w = kvB, o = output)
        fixed (long* sl = slots, len = lengths)
        {
            var p = new Pointers((nint)qn, (nint)qp, (nint)kv, cache.Length, (nint)sl, (nint)len, (nint)w, (nint)o);
            if (items == 1) Item(s, p, maxContext, 0, 0, s.Heads);
            else
                Parallel.For(0, items, i =>
                {
                    var b = i / groups;
                    var g = i % groups;
                    Item(s, p, maxContext, b, s.Heads * g / groups, s.Heads * (g + 1) / groups);
                });
        }
    }

    private readonly record struct Pointers(nint QNope, nint QPe, nint Cache, int CacheLength, nint Slots, nint Lengths, nint KvB, nint Output);

    /// <summary>Heads [<paramref name="h0"/>, <paramref name="h1"/>) of sequence <paramref name="b"/>.</summary>
    private static void Item(Shape s, Pointers p, int maxContext, int b, int h0, int h1)
    {
        var heads = h1 - h0;
        var row = s.Row;
        var pool = ArrayPool<float>.Shared;
        var q = pool.Rent(heads * row);
        var acc = pool.Rent(heads * s.Latent);
        var scores = pool.Rent(heads * Tile);
        var max = pool.Rent(heads);
        var sum = pool.Rent(heads);
        try
        {
            var kvB = new ReadOnlySpan<float>((void*)p.KvB, s.Heads * (s.Nope + s.Value) * s.Latent);
            var cache = new ReadOnlySpan<float>((void*)p.Cache, p.CacheLength);
            var slots = new ReadOnlySpan<long>((void*)(p.Slots + (nint)b * maxContext * sizeof(long)), maxContext);
            var length = (int)((long*)p.Lengths)[b];
            for (var h = 0; h < heads; h++)
            {
                // The query in latent space: its nope part through the head's key rows of kv_b_proj, then the rope part.
                var head = h0 + h;
                var qh = q.AsSpan(h * row, row);
                var latent = qh[..s.Latent];
                latent.Clear();
                var nope = new ReadOnlySpan<float>((void*)(p.QNope + ((nint)b * s.Heads + head) * s.Nope * sizeof(float)), s.Nope);
                for (var n = 0; n < s.Nope; n++)
                    TensorPrimitives.MultiplyAdd(kvB.Slice((head * (s.Nope + s.Value) + n) * s.Latent, s.Latent), nope[n], latent, latent);
                new ReadOnlySpan<float>((void*)(p.QPe + ((nint)b * s.Heads + head) * s.Rope * sizeof(float)), s.Rope).CopyTo(qh[s.Latent..]);
            }
            acc.AsSpan(0, heads * s.Latent).Clear();
            max.AsSpan(0, heads).Fill(float.NegativeInfinity);
            sum.AsSpan(0, heads).Clear();
            for (var t0 = 0; t0 < length; t0 += Tile)
            {
                var t1 = Math.Min(length, t0 + Tile);
                var n = t1 - t0;
                for (var t = t0; t < t1; t++)
                {
                    var r = cache.Slice(checked((int)slots[t] * row), row);
                    for (var h = 0; h < heads; h++) scores[h * Tile + t - t0] = TensorPrimitives.Dot(q.AsSpan(h * row, row), r) * s.Scale;
                }
                for (var h = 0; h < heads; h++)
                {
                    // Online softmax: rescale what earlier tiles added by exp(old max - new max).
                    var sh = scores.AsSpan(h * Tile, n);
                    var newMax = Math.Max(max[h], TensorPrimitives.Max(sh));
                    var correction = MathF.Exp(max[h] - newMax);
                    TensorPrimitives.Subtract(sh, newMax, sh);
                    TensorPrimitives.Exp(sh, sh);
                    sum[h] = sum[h] * correction + TensorPrimitives.Sum(sh);
                    if (correction != 1f) TensorPrimitives.Multiply(acc.AsSpan(h * s.Latent, s.Latent), correction, acc.AsSpan(h * s.Latent, s.Latent));
                    max[h] = newMax;
                }
                for (var t = t0; t < t1; t++)
                {
                    var latentRow = cache.Slice((int)slots[t] * row, s.Latent);
                    for (var h = 0; h < heads; h++)
                        TensorPrimitives.MultiplyAdd(latentRow, scores[h * Tile + t - t0], acc.AsSpan(h * s.Latent, s.Latent), acc.AsSpan(h * s.Latent, s.Latent));
                }
            }
            for (var h = 0; h < heads; h++)
            {
                // The latent output, normalised, back through the head's value rows of kv_b_proj.
                var head = h0 + h;
                var o = acc.AsSpan(h * s.Latent, s.Latent);
                TensorPrimitives.Divide(o, sum[h], o);
                var outHead = new Span<float>((void*)(p.Output + ((nint)b * s.Heads + head) * s.Value * sizeof(float)), s.Value);
                for (var v = 0; v < s.Value; v++)
                    outHead[v] = TensorPrimitives.Dot(o, kvB.Slice((head * (s.Nope + s.Value) + s.Nope + v) * s.Latent, s.Latent));
            }
        }
        finally
        {
            pool.Return(q);
            pool.Return(acc);
            pool.Return(scores);
            pool.Return(max);
            pool.Return(sum);
        }
    }
}
