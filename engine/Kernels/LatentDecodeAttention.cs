using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
        var pool = ArrayPool<float>.Shared;
        // Queries in latent space (then the rope part) and the attention's latent outputs, [B, H, *].
        var queries = pool.Rent(sequences * s.Heads * s.Row);
        var latents = pool.Rent(sequences * s.Heads * s.Latent);
        try
        {
            fixed (float* qn = qNope, qp = qPe, kv = cache, w = kvB, o = output, q = queries, l = latents)
            fixed (long* sl = slots, len = lengths)
            {
                var p = new Pointers((nint)qn, (nint)qp, (nint)kv, cache.Length, (nint)sl, (nint)len, (nint)w, (nint)o, (nint)q, (nint)l);
                // A head's rows of kv_b_proj are read once for every sequence: the first and last phases go by heads.
                Spread(s.Heads, h => IntoLatent(s, p, sequences, h));
                // The context is each sequence's own: by sequences, their heads split too when they are fewer than the cores.
                var groups = sequences >= Environment.ProcessorCount ? 1 : Math.Min(s.Heads, Environment.ProcessorCount);
                Spread(sequences * groups, i => Attend(s, p, maxContext, i / groups, s.Heads * (i % groups) / groups, s.Heads * (i % groups + 1) / groups));
                Spread(s.Heads, h => OutOfLatent(s, p, sequences, h));
            }
        }
        finally
        {
            pool.Return(queries);
            pool.Return(latents);
        }
    }

    private static void Spread(int items, Action<int> item)
    {
        if (items == 1) item(0);
        else Parallel.For(0, items, item);
    }

    /// <summary>Head <paramref name="h"/>'s query of every sequence in latent space: its nope part through the head's key rows of kv_b_proj, then the rope part.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void IntoLatent(Shape s, Pointers p, int sequences, int h)
    {
        var keyRows = new ReadOnlySpan<float>((void*)(p.KvB + (nint)h * (s.Nope + s.Value) * s.Latent * sizeof(float)), s.Nope * s.Latent);
        for (var b = 0; b < sequences; b++)
        {
            var q = new Span<float>((void*)(p.Queries + ((nint)b * s.Heads + h) * s.Row * sizeof(float)), s.Row);
            var latent = q[..s.Latent];
            latent.Clear();
            var nope = new ReadOnlySpan<float>((void*)(p.QNope + ((nint)b * s.Heads + h) * s.Nope * sizeof(float)), s.Nope);
            for (var n = 0; n < s.Nope; n++) Axpy(keyRows.Slice(n * s.Latent, s.Latent), nope[n], latent);
            new ReadOnlySpan<float>((void*)(p.QPe + ((nint)b * s.Heads + h) * s.Rope * sizeof(float)), s.Rope).CopyTo(q[s.Latent..]);
        }
    }

    /// <summary>Head <paramref name="h"/>'s output of every sequence: its latent output through the head's value rows of kv_b_proj.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OutOfLatent(Shape s, Pointers p, int sequences, int h)
    {
        var valueRows = new ReadOnlySpan<float>((void*)(p.KvB + ((nint)h * (s.Nope + s.Value) + s.Nope) * s.Latent * sizeof(float)), s.Value * s.Latent);
        for (var b = 0; b < sequences; b++)
        {
            var latent = new ReadOnlySpan<float>((void*)(p.Latents + ((nint)b * s.Heads + h) * s.Latent * sizeof(float)), s.Latent);
            var output = new Span<float>((void*)(p.Output + ((nint)b * s.Heads + h) * s.Value * sizeof(float)), s.Value);
            for (var v = 0; v < s.Value; v++) output[v] = Dot(latent, valueRows.Slice(v * s.Latent, s.Latent));
        }
    }

    /// <summary>
    /// x · y over short rows (a head's 64 to 576 floats): inlined two-accumulator vector loops, because a library call
    /// per row costs as much as its math at these lengths and the loops here make tens of thousands a layer.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        ref var a = ref MemoryMarshal.GetReference(x);
        ref var b = ref MemoryMarshal.GetReference(y);
        var n = Math.Min(x.Length, y.Length);
        Vector256<float> s0 = default, s1 = default;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            s0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)i), Vector256.LoadUnsafe(ref b, (nuint)i), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)i + 8), Vector256.LoadUnsafe(ref b, (nuint)i + 8), s1);
        }
        var sum = Vector256.Sum(s0 + s1);
        for (; i < n; i++) sum += Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
        return sum;
    }

    /// <summary>y += alpha · x over a short row, inlined for the same reason as <see cref="Dot"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(ReadOnlySpan<float> x, float alpha, Span<float> y)
    {
        ref var a = ref MemoryMarshal.GetReference(x);
        ref var b = ref MemoryMarshal.GetReference(y);
        var n = Math.Min(x.Length, y.Length);
        var scale = Vector256.Create(alpha);
        var i = 0;
        for (; i + 8 <= n; i += 8)
            Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)i), scale, Vector256.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref b, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref b, i) += alpha * Unsafe.Add(ref a, i);
    }

    private readonly record struct Pointers(nint QNope, nint QPe, nint Cache, int CacheLength, nint Slots, nint Lengths, nint KvB, nint Output, nint Queries, nint Latents);

    /// <summary>Heads [<paramref name="h0"/>, <paramref name="h1"/>) of sequence <paramref name="b"/> over its context, in tiles with an online softmax.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Attend(Shape s, Pointers p, int maxContext, int b, int h0, int h1)
    {
        var heads = h1 - h0;
        var row = s.Row;
        var pool = ArrayPool<float>.Shared;
        var scores = pool.Rent(heads * Tile);
        var max = pool.Rent(heads);
        var sum = pool.Rent(heads);
        try
        {
            var cache = new ReadOnlySpan<float>((void*)p.Cache, p.CacheLength);
            var slots = new ReadOnlySpan<long>((void*)(p.Slots + (nint)b * maxContext * sizeof(long)), maxContext);
            var length = (int)((long*)p.Lengths)[b];
            var q = new ReadOnlySpan<float>((void*)(p.Queries + ((nint)b * s.Heads + h0) * row * sizeof(float)), heads * row);
            var acc = new Span<float>((void*)(p.Latents + ((nint)b * s.Heads + h0) * s.Latent * sizeof(float)), heads * s.Latent);
            acc.Clear();
            max.AsSpan(0, heads).Fill(float.NegativeInfinity);
            sum.AsSpan(0, heads).Clear();
            for (var t0 = 0; t0 < length; t0 += Tile)
            {
                var t1 = Math.Min(length, t0 + Tile);
                var n = t1 - t0;
                for (var t = t0; t < t1; t++)
                {
                    var r = cache.Slice(checked((int)slots[t] * row), row);
                    for (var h = 0; h < heads; h++) scores[h * Tile + t - t0] = Dot(q.Slice(h * row, row), r) * s.Scale;
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
                    if (correction != 1f) TensorPrimitives.Multiply(acc.Slice(h * s.Latent, s.Latent), correction, acc.Slice(h * s.Latent, s.Latent));
                    max[h] = newMax;
                }
                for (var t = t0; t < t1; t++)
                {
                    var latentRow = cache.Slice((int)slots[t] * row, s.Latent);
                    for (var h = 0; h < heads; h++) Axpy(latentRow, scores[h * Tile + t - t0], acc.Slice(h * s.Latent, s.Latent));
                }
            }
            for (var h = 0; h < heads; h++) TensorPrimitives.Divide(acc.Slice(h * s.Latent, s.Latent), sum[h], acc.Slice(h * s.Latent, s.Latent));
        }
        finally
        {
            pool.Return(scores);
            pool.Return(max);
            pool.Return(sum);
        }
    }
}
