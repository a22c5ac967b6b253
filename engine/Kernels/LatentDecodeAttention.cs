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

    /// <summary>
    /// Context bytes (every sequence's cached rows, as floats) up to which attention runs in one pass by heads: each
    /// head then reads all of it, so it must stay in a core's second-level cache (512 KB to 2 MB on current server
    /// cores). Beyond, three passes: heads into latent space, sequences over their context, heads out of it.
    /// </summary>
    internal const int ByHeadsContextBytes = 256 << 10;

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
        if (kvB.Length < s.Heads * (s.Nope + s.Value) * s.Latent) throw new ArgumentException("kv_b_proj does not match the shape");
        Run(s, sequences, qNope, qPe, cache, slots, maxContext, lengths, kvB, null, output, ByHeads(s, sequences, maxContext));
    }

    /// <summary>
    /// As the other overload, with kv_b_proj held as the checkpoint stores it (<see cref="PackedMatrix"/>): the first
    /// and last phases widen one head's rows at a time into a buffer that stays in the core's cache.
    /// </summary>
    public static void Run(Shape s, int sequences, ReadOnlySpan<float> qNope, ReadOnlySpan<float> qPe, ReadOnlySpan<float> cache,
        ReadOnlySpan<long> slots, int maxContext, ReadOnlySpan<long> lengths, PackedMatrix kvB, Span<float> output)
    {
        if (kvB.Rows != s.Heads * (s.Nope + s.Value) || kvB.Cols != s.Latent) throw new ArgumentException("kv_b_proj does not match the shape");
        Run(s, sequences, qNope, qPe, cache, slots, maxContext, lengths, default, kvB, output, ByHeads(s, sequences, maxContext));
    }

    /// <summary>
    /// Whether attention runs in one pass by heads: when every sequence's context together fits
    /// <see cref="ByHeadsContextBytes"/>, since each head then reads all of it.
    /// </summary>
    private static bool ByHeads(Shape s, int sequences, int maxContext) => (long)sequences * maxContext * s.Row * sizeof(float) <= ByHeadsContextBytes;

    /// <summary>
    /// The kernel on kv_b_proj as float32 (<paramref name="kvB"/>) or packed; <paramref name="byHeads"/> picks the form
    /// (the same arithmetic for each head and sequence either way, so the same results).
    /// </summary>
    internal static void Run(Shape s, int sequences, ReadOnlySpan<float> qNope, ReadOnlySpan<float> qPe, ReadOnlySpan<float> cache,
        ReadOnlySpan<long> slots, int maxContext, ReadOnlySpan<long> lengths, ReadOnlySpan<float> kvB, PackedMatrix? packed, Span<float> output, bool byHeads)
    {
        if (qNope.Length < sequences * s.Heads * s.Nope || qPe.Length < sequences * s.Heads * s.Rope || slots.Length < sequences * maxContext
            || lengths.Length < sequences || output.Length < sequences * s.Heads * s.Value)
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
                var p = new Pointers((nint)qn, (nint)qp, (nint)kv, cache.Length, (nint)sl, (nint)len, (nint)w, packed, (nint)o, (nint)q, (nint)l);
                if (byHeads)
                {
                    // Little context: one pass by heads, each widening its rows of kv_b_proj once and reading every
                    // sequence's context from the core's cache.
                    KernelThreads.For(s.Heads, h => WithHeadRows(s, p, h, 0, s.Nope + s.Value, rows =>
                    {
                        IntoLatent(s, p, sequences, h, (float*)rows);
                        for (var b = 0; b < sequences; b++) Attend(s, p, maxContext, b, h, h + 1);
                        OutOfLatent(s, p, sequences, h, (float*)rows + s.Nope * s.Latent);
                    }));
                    return;
                }
                // A head's rows of kv_b_proj are read once for every sequence: the first and last phases go by heads.
                KernelThreads.For(s.Heads, h => WithHeadRows(s, p, h, 0, s.Nope, keys => IntoLatent(s, p, sequences, h, (float*)keys)));
                // The context is each sequence's own: by sequences, their heads split too when they are fewer than the cores.
                var groups = sequences >= Environment.ProcessorCount ? 1 : Math.Min(s.Heads, Environment.ProcessorCount);
                KernelThreads.For(sequences * groups, i => Attend(s, p, maxContext, i / groups, s.Heads * (i % groups) / groups, s.Heads * (i % groups + 1) / groups));
                KernelThreads.For(s.Heads, h => WithHeadRows(s, p, h, s.Nope, s.Value, values => OutOfLatent(s, p, sequences, h, (float*)values)));
            }
        }
        finally
        {
            pool.Return(queries);
            pool.Return(latents);
        }
    }

    /// <summary>
    /// Head <paramref name="h"/>'s query of every sequence in latent space: its nope part through the head's key rows
    /// of kv_b_proj (a [sequences, nope] by [nope, latent] product), then the rope part. Sums for two sequences by 32
    /// latent columns stay in registers over the nope dimension, and a block of 32 columns of the key rows stays in the
    /// core's first-level cache while every sequence passes over it; each sum adds the nope terms in order, as a
    /// running sum would.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void IntoLatent(Shape s, Pointers p, int sequences, int h, float* keys)
    {
        int nope = s.Nope, latent = s.Latent, row = s.Row;
        var whole = latent & ~31;
        for (var c = 0; c < whole; c += 32)
            for (var b = 0; b < sequences; b += 2)
            {
                // An odd last sequence pairs with itself: the second sums are the same, written twice.
                var b1 = Math.Min(b + 1, sequences - 1);
                var x0 = (float*)p.QNope + ((nint)b * s.Heads + h) * nope;
                var x1 = (float*)p.QNope + ((nint)b1 * s.Heads + h) * nope;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, e0 = default, e1 = default, e2 = default, e3 = default;
                var k = keys + c;
                for (var n = 0; n < nope; n++, k += latent)
                {
                    var (k0, k1, k2, k3) = (Vector256.Load(k), Vector256.Load(k + 8), Vector256.Load(k + 16), Vector256.Load(k + 24));
                    var (v0, v1) = (Vector256.Create(x0[n]), Vector256.Create(x1[n]));
                    a0 = Vector256.FusedMultiplyAdd(k0, v0, a0);
                    a1 = Vector256.FusedMultiplyAdd(k1, v0, a1);
                    a2 = Vector256.FusedMultiplyAdd(k2, v0, a2);
                    a3 = Vector256.FusedMultiplyAdd(k3, v0, a3);
                    e0 = Vector256.FusedMultiplyAdd(k0, v1, e0);
                    e1 = Vector256.FusedMultiplyAdd(k1, v1, e1);
                    e2 = Vector256.FusedMultiplyAdd(k2, v1, e2);
                    e3 = Vector256.FusedMultiplyAdd(k3, v1, e3);
                }
                var q0 = (float*)p.Queries + ((nint)b * s.Heads + h) * row + c;
                var q1 = (float*)p.Queries + ((nint)b1 * s.Heads + h) * row + c;
                a0.Store(q0);
                a1.Store(q0 + 8);
                a2.Store(q0 + 16);
                a3.Store(q0 + 24);
                e0.Store(q1);
                e1.Store(q1 + 8);
                e2.Store(q1 + 16);
                e3.Store(q1 + 24);
            }
        for (var b = 0; b < sequences; b++)
        {
            var x = (float*)p.QNope + ((nint)b * s.Heads + h) * nope;
            var q = (float*)p.Queries + ((nint)b * s.Heads + h) * row;
            // Columns past the last whole 32, then the rope part as it is.
            for (var c = whole; c < latent; c++)
            {
                var sum = 0f;
                for (var n = 0; n < nope; n++) sum = MathF.FusedMultiplyAdd(keys[(nint)n * latent + c], x[n], sum);
                q[c] = sum;
            }
            new ReadOnlySpan<float>((void*)(p.QPe + ((nint)b * s.Heads + h) * s.Rope * sizeof(float)), s.Rope).CopyTo(new Span<float>(q + latent, s.Rope));
        }
    }

    /// <summary>
    /// Head <paramref name="h"/>'s output of every sequence: its latent output through the head's value rows of
    /// kv_b_proj, dot products in tiles of two sequences by four value rows (each latent vector loaded once for four
    /// rows, each row vector once for two sequences); four rows of values stay in the first-level cache while every
    /// sequence passes over them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OutOfLatent(Shape s, Pointers p, int sequences, int h, float* values)
    {
        int latent = s.Latent, value = s.Value;
        var whole = latent & ~7;
        Span<float> sums = stackalloc float[8];
        for (var v = 0; v < value; v += 4)
        {
            // Past the last whole four value rows, the last row stands in for the missing ones (their sums are dropped).
            var w0 = values + (nint)v * latent;
            var w1 = values + (nint)Math.Min(v + 1, value - 1) * latent;
            var w2 = values + (nint)Math.Min(v + 2, value - 1) * latent;
            var w3 = values + (nint)Math.Min(v + 3, value - 1) * latent;
            for (var b = 0; b < sequences; b += 2)
            {
                var b1 = Math.Min(b + 1, sequences - 1);
                var l0 = (float*)p.Latents + ((nint)b * s.Heads + h) * latent;
                var l1 = (float*)p.Latents + ((nint)b1 * s.Heads + h) * latent;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, e0 = default, e1 = default, e2 = default, e3 = default;
                for (var c = 0; c < whole; c += 8)
                {
                    var (x0, x1) = (Vector256.Load(l0 + c), Vector256.Load(l1 + c));
                    var r = Vector256.Load(w0 + c);
                    a0 = Vector256.FusedMultiplyAdd(r, x0, a0);
                    e0 = Vector256.FusedMultiplyAdd(r, x1, e0);
                    r = Vector256.Load(w1 + c);
                    a1 = Vector256.FusedMultiplyAdd(r, x0, a1);
                    e1 = Vector256.FusedMultiplyAdd(r, x1, e1);
                    r = Vector256.Load(w2 + c);
                    a2 = Vector256.FusedMultiplyAdd(r, x0, a2);
                    e2 = Vector256.FusedMultiplyAdd(r, x1, e2);
                    r = Vector256.Load(w3 + c);
                    a3 = Vector256.FusedMultiplyAdd(r, x0, a3);
                    e3 = Vector256.FusedMultiplyAdd(r, x1, e3);
                }
                (sums[0], sums[1], sums[2], sums[3]) = (Vector256.Sum(a0), Vector256.Sum(a1), Vector256.Sum(a2), Vector256.Sum(a3));
                (sums[4], sums[5], sums[6], sums[7]) = (Vector256.Sum(e0), Vector256.Sum(e1), Vector256.Sum(e2), Vector256.Sum(e3));
                for (var c = whole; c < latent; c++)
                {
                    var (w0c, w1c, w2c, w3c) = (w0[c], w1[c], w2[c], w3[c]);
                    sums[0] += w0c * l0[c];
                    sums[1] += w1c * l0[c];
                    sums[2] += w2c * l0[c];
                    sums[3] += w3c * l0[c];
                    sums[4] += w0c * l1[c];
                    sums[5] += w1c * l1[c];
                    sums[6] += w2c * l1[c];
                    sums[7] += w3c * l1[c];
                }
                var o0 = (float*)p.Output + ((nint)b * s.Heads + h) * value;
                var o1 = (float*)p.Output + ((nint)b1 * s.Heads + h) * value;
                for (var i = 0; i < 4 && v + i < value; i++)
                {
                    o0[v + i] = sums[i];
                    o1[v + i] = sums[4 + i];
                }
            }
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

    private static ReadOnlySpan<float> Row(ReadOnlySpan<float> cache, long slot, int row) => cache.Slice(checked((int)slot * row), row);

    /// <summary>q · r0 .. q · r3: each vector of q loaded once for four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float, float, float) Dot4(ReadOnlySpan<float> q, ReadOnlySpan<float> r0, ReadOnlySpan<float> r1, ReadOnlySpan<float> r2, ReadOnlySpan<float> r3)
    {
        var n = q.Length;
        if (r0.Length < n || r1.Length < n || r2.Length < n || r3.Length < n) throw new ArgumentException("rows shorter than the query");
        ref var qp = ref MemoryMarshal.GetReference(q);
        ref var a = ref MemoryMarshal.GetReference(r0);
        ref var b = ref MemoryMarshal.GetReference(r1);
        ref var c = ref MemoryMarshal.GetReference(r2);
        ref var d = ref MemoryMarshal.GetReference(r3);
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        var i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var x = Vector256.LoadUnsafe(ref qp, (nuint)i);
            s0 = Vector256.FusedMultiplyAdd(x, Vector256.LoadUnsafe(ref a, (nuint)i), s0);
            s1 = Vector256.FusedMultiplyAdd(x, Vector256.LoadUnsafe(ref b, (nuint)i), s1);
            s2 = Vector256.FusedMultiplyAdd(x, Vector256.LoadUnsafe(ref c, (nuint)i), s2);
            s3 = Vector256.FusedMultiplyAdd(x, Vector256.LoadUnsafe(ref d, (nuint)i), s3);
        }
        var (t0, t1, t2, t3) = (Vector256.Sum(s0), Vector256.Sum(s1), Vector256.Sum(s2), Vector256.Sum(s3));
        for (; i < n; i++)
        {
            var x = Unsafe.Add(ref qp, i);
            t0 += x * Unsafe.Add(ref a, i);
            t1 += x * Unsafe.Add(ref b, i);
            t2 += x * Unsafe.Add(ref c, i);
            t3 += x * Unsafe.Add(ref d, i);
        }
        return (t0, t1, t2, t3);
    }

    /// <summary>y += p0 · r0 + .. + p3 · r3 over y's length: each vector of y loaded and stored once for four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy4(ReadOnlySpan<float> r0, ReadOnlySpan<float> r1, ReadOnlySpan<float> r2, ReadOnlySpan<float> r3, float p0, float p1, float p2, float p3, Span<float> y)
    {
        var n = y.Length;
        if (r0.Length < n || r1.Length < n || r2.Length < n || r3.Length < n) throw new ArgumentException("rows shorter than the sums");
        ref var a = ref MemoryMarshal.GetReference(r0);
        ref var b = ref MemoryMarshal.GetReference(r1);
        ref var c = ref MemoryMarshal.GetReference(r2);
        ref var d = ref MemoryMarshal.GetReference(r3);
        ref var yp = ref MemoryMarshal.GetReference(y);
        var (v0, v1, v2, v3) = (Vector256.Create(p0), Vector256.Create(p1), Vector256.Create(p2), Vector256.Create(p3));
        var i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var acc = Vector256.LoadUnsafe(ref yp, (nuint)i);
            acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)i), v0, acc);
            acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref b, (nuint)i), v1, acc);
            acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref c, (nuint)i), v2, acc);
            acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref d, (nuint)i), v3, acc);
            acc.StoreUnsafe(ref yp, (nuint)i);
        }
        for (; i < n; i++)
            Unsafe.Add(ref yp, i) += p0 * Unsafe.Add(ref a, i) + p1 * Unsafe.Add(ref b, i) + p2 * Unsafe.Add(ref c, i) + p3 * Unsafe.Add(ref d, i);
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

    /// <summary>The spans' addresses; kv_b_proj as float32 at KvB, or packed (then KvB is zero).</summary>
    private readonly record struct Pointers(nint QNope, nint QPe, nint Cache, int CacheLength, nint Slots, nint Lengths, nint KvB, PackedMatrix? Packed,
        nint Output, nint Queries, nint Latents);

    /// <summary>
    /// Runs <paramref name="phase"/> on <paramref name="count"/> rows of head <paramref name="h"/>'s block of kv_b_proj
    /// from row <paramref name="offset"/> within the block: in place when float32, else widened into a pooled buffer.
    /// </summary>
    private static void WithHeadRows(Shape s, Pointers p, int h, int offset, int count, Action<nint> phase)
    {
        var first = h * (s.Nope + s.Value) + offset;
        if (p.Packed is not { } packed)
        {
            phase(p.KvB + (nint)first * s.Latent * sizeof(float));
            return;
        }
        var rows = ArrayPool<float>.Shared.Rent(count * s.Latent);
        try
        {
            packed.Widen(first, first + count, rows);
            fixed (float* r = rows) phase((nint)r);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rows);
        }
    }

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
                // Four cached rows at a time against every head's query: each query vector loaded once for four rows.
                var t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    var r0 = Row(cache, slots[t], row);
                    var r1 = Row(cache, slots[t + 1], row);
                    var r2 = Row(cache, slots[t + 2], row);
                    var r3 = Row(cache, slots[t + 3], row);
                    for (var h = 0; h < heads; h++)
                    {
                        var (d0, d1, d2, d3) = Dot4(q.Slice(h * row, row), r0, r1, r2, r3);
                        var at = h * Tile + t - t0;
                        (scores[at], scores[at + 1], scores[at + 2], scores[at + 3]) = (d0 * s.Scale, d1 * s.Scale, d2 * s.Scale, d3 * s.Scale);
                    }
                }
                for (; t < t1; t++)
                {
                    var r = Row(cache, slots[t], row);
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
                // Four rows' latents at a time into every head's sum: each sum vector loaded and stored once for four rows.
                t = t0;
                for (; t + 4 <= t1; t += 4)
                {
                    var r0 = Row(cache, slots[t], row);
                    var r1 = Row(cache, slots[t + 1], row);
                    var r2 = Row(cache, slots[t + 2], row);
                    var r3 = Row(cache, slots[t + 3], row);
                    for (var h = 0; h < heads; h++)
                    {
                        var at = h * Tile + t - t0;
                        Axpy4(r0, r1, r2, r3, scores[at], scores[at + 1], scores[at + 2], scores[at + 3], acc.Slice(h * s.Latent, s.Latent));
                    }
                }
                for (; t < t1; t++)
                {
                    var latentRow = Row(cache, slots[t], row)[..s.Latent];
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
