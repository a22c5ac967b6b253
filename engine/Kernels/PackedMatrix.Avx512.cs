using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeMesh.Engine.Kernels;

/// <summary>
/// The BF16 products of <see cref="PackedMatrix"/> in 512-bit vectors, on rows laid out in runs of 32: twice the
/// multiply-adds an instruction of the AVX2 kernels, which matters where a product is bound by them rather than by
/// memory (several rows of x: the experts' token groups, a batch's LM head and projections).
/// </summary>
public sealed unsafe partial class PackedMatrix
{
    /// <summary>Up to four rows of x (a tile) against weight rows [<paramref name="from"/>, <paramref name="to"/>).</summary>
    private void TileWide(ReadOnlySpan<float> x, int rows, Span<float> y, int yStride, int from, int to)
    {
        switch (rows)
        {
            case 1: OneRowWide(x, y, from, to); break;
            case 2: TilesWide<TwoRows>(x, y, yStride, from, to); break;
            case 3: TilesWide<ThreeRows>(x, y, yStride, from, to); break;
            default: TilesWide<FourRows>(x, y, yStride, from, to); break;
        }
    }

    /// <summary>One row of x, four weight rows at a time, two accumulators a weight row (as the AVX2 kernel).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OneRowWide(ReadOnlySpan<float> x, Span<float> y, int from, int to)
    {
        var cols = Cols;
        var whole = _whole;
        ref var xp = ref MemoryMarshal.GetReference(x);
        var high = Vector512.Create(unchecked((int)0xFFFF0000));
        var j = from;
        for (; j + 4 <= to; j += 4)
        {
            ref var w0 = ref Lane(j);
            ref var w1 = ref Lane(j + 1);
            ref var w2 = ref Lane(j + 2);
            ref var w3 = ref Lane(j + 3);
            var ahead = (byte*)Unsafe.AsPointer(ref w0) + 8L * cols;
            Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
            for (var k = 0; k < whole; k += 32)
            {
                Sse.Prefetch0(ahead + 8 * k);
                Sse.Prefetch0(ahead + 8 * k + 64);
                Sse.Prefetch0(ahead + 8 * k + 128);
                Sse.Prefetch0(ahead + 8 * k + 192);
                var xa = Vector512.LoadUnsafe(ref Unsafe.Add(ref xp, k));
                var xb = Vector512.LoadUnsafe(ref Unsafe.Add(ref xp, k + 16));
                var r0 = Vector512.LoadUnsafe(ref Unsafe.Add(ref w0, k / 2));
                var r1 = Vector512.LoadUnsafe(ref Unsafe.Add(ref w1, k / 2));
                var r2 = Vector512.LoadUnsafe(ref Unsafe.Add(ref w2, k / 2));
                var r3 = Vector512.LoadUnsafe(ref Unsafe.Add(ref w3, k / 2));
                e0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(r0, 16).AsSingle(), xa, e0);
                o0 = Avx512F.FusedMultiplyAdd(Avx512F.And(r0, high).AsSingle(), xb, o0);
                e1 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(r1, 16).AsSingle(), xa, e1);
                o1 = Avx512F.FusedMultiplyAdd(Avx512F.And(r1, high).AsSingle(), xb, o1);
                e2 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(r2, 16).AsSingle(), xa, e2);
                o2 = Avx512F.FusedMultiplyAdd(Avx512F.And(r2, high).AsSingle(), xb, o2);
                e3 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(r3, 16).AsSingle(), xa, e3);
                o3 = Avx512F.FusedMultiplyAdd(Avx512F.And(r3, high).AsSingle(), xb, o3);
            }
            y[j] = Vector512.Sum(e0 + o0);
            y[j + 1] = Vector512.Sum(e1 + o1);
            y[j + 2] = Vector512.Sum(e2 + o2);
            y[j + 3] = Vector512.Sum(e3 + o3);
        }
        for (; j < to; j++)
        {
            ref var w = ref Lane(j);
            Vector512<float> e = default, o = default;
            for (var k = 0; k < whole; k += 32)
            {
                var r = Vector512.LoadUnsafe(ref Unsafe.Add(ref w, k / 2));
                e = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(r, 16).AsSingle(), Vector512.LoadUnsafe(ref Unsafe.Add(ref xp, k)), e);
                o = Avx512F.FusedMultiplyAdd(Avx512F.And(r, high).AsSingle(), Vector512.LoadUnsafe(ref Unsafe.Add(ref xp, k + 16)), o);
            }
            y[j] = Vector512.Sum(e + o);
        }
    }

    /// <summary>Two to four rows of x by two weight rows, even and odd halves of a run apart (as the AVX2 kernel).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void TilesWide<TRows>(ReadOnlySpan<float> x, Span<float> y, int yStride, int from, int to) where TRows : struct, IRowCount
    {
        var n = TRows.N;
        var cols = Cols;
        var whole = _whole;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, cols);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : cols);
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : cols);
        var high = Vector512.Create(unchecked((int)0xFFFF0000));
        for (var j = from; j < to; j += 2)
        {
            var pair = j + 1 < to;
            ref var wa = ref Lane(j);
            ref var wb = ref Lane(pair ? j + 1 : j);
            var ahead = (byte*)Unsafe.AsPointer(ref wa) + 4L * cols;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
            for (var k = 0; k < whole; k += 32)
            {
                Sse.Prefetch0(ahead + 4 * k);
                Sse.Prefetch0(ahead + 4 * k + 64);
                var ra = Vector512.LoadUnsafe(ref Unsafe.Add(ref wa, k / 2));
                var rb = Vector512.LoadUnsafe(ref Unsafe.Add(ref wb, k / 2));
                var la = Avx512F.ShiftLeftLogical(ra, 16).AsSingle();
                var ha = Avx512F.And(ra, high).AsSingle();
                var lb = Avx512F.ShiftLeftLogical(rb, 16).AsSingle();
                var hb = Avx512F.And(rb, high).AsSingle();
                var xa = Vector512.LoadUnsafe(ref Unsafe.Add(ref x0, k));
                var xb = Vector512.LoadUnsafe(ref Unsafe.Add(ref x0, k + 16));
                a0 = Avx512F.FusedMultiplyAdd(la, xa, a0);
                c0 = Avx512F.FusedMultiplyAdd(ha, xb, c0);
                b0 = Avx512F.FusedMultiplyAdd(lb, xa, b0);
                d0 = Avx512F.FusedMultiplyAdd(hb, xb, d0);
                xa = Vector512.LoadUnsafe(ref Unsafe.Add(ref x1, k));
                xb = Vector512.LoadUnsafe(ref Unsafe.Add(ref x1, k + 16));
                a1 = Avx512F.FusedMultiplyAdd(la, xa, a1);
                c1 = Avx512F.FusedMultiplyAdd(ha, xb, c1);
                b1 = Avx512F.FusedMultiplyAdd(lb, xa, b1);
                d1 = Avx512F.FusedMultiplyAdd(hb, xb, d1);
                if (n > 2)
                {
                    xa = Vector512.LoadUnsafe(ref Unsafe.Add(ref x2, k));
                    xb = Vector512.LoadUnsafe(ref Unsafe.Add(ref x2, k + 16));
                    a2 = Avx512F.FusedMultiplyAdd(la, xa, a2);
                    c2 = Avx512F.FusedMultiplyAdd(ha, xb, c2);
                    b2 = Avx512F.FusedMultiplyAdd(lb, xa, b2);
                    d2 = Avx512F.FusedMultiplyAdd(hb, xb, d2);
                }
                if (n > 3)
                {
                    xa = Vector512.LoadUnsafe(ref Unsafe.Add(ref x3, k));
                    xb = Vector512.LoadUnsafe(ref Unsafe.Add(ref x3, k + 16));
                    a3 = Avx512F.FusedMultiplyAdd(la, xa, a3);
                    c3 = Avx512F.FusedMultiplyAdd(ha, xb, c3);
                    b3 = Avx512F.FusedMultiplyAdd(lb, xa, b3);
                    d3 = Avx512F.FusedMultiplyAdd(hb, xb, d3);
                }
            }
            y[j] = Vector512.Sum(a0 + c0);
            y[yStride + j] = Vector512.Sum(a1 + c1);
            if (n > 2) y[2 * yStride + j] = Vector512.Sum(a2 + c2);
            if (n > 3) y[3 * yStride + j] = Vector512.Sum(a3 + c3);
            if (!pair) continue;
            y[j + 1] = Vector512.Sum(b0 + d0);
            y[yStride + j + 1] = Vector512.Sum(b1 + d1);
            if (n > 2) y[2 * yStride + j + 1] = Vector512.Sum(b2 + d2);
            if (n > 3) y[3 * yStride + j + 1] = Vector512.Sum(b3 + d3);
        }
    }
}
