using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Kernels;

/// <summary>The FP8 (e4m3, 128x128 block scales) products of <see cref="PackedMatrix"/>.</summary>
public sealed partial class PackedMatrix
{
    /// <summary>
    /// Up to four rows of x against FP8 weights: each weight row is read once for the x rows, 16 codes at a time,
    /// widened in registers (<see cref="WidenFp8"/>); each row's sum over a 128-column block is scaled once by the
    /// block's scale.
    /// With fewer than four rows the missing ones repeat the last and are not stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RowsFp8(ReadOnlySpan<float> x, int n, Span<float> y, int yStride, int from, int to)
    {
        var cols = Cols;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, n > 1 ? cols : 0);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : (n > 1 ? cols : 0));
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : (n > 2 ? 2 * cols : (n > 1 ? cols : 0)));
        var table = DTypes.Fp8E4M3Values;
        for (var j = from; j < to; j++)
        {
            ref var w = ref Fp8Codes[j * cols];
            var scaleRow = j / Fp8Block * _scaleCols;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int k0 = 0, b = 0; k0 < cols; k0 += Fp8Block, b++)
            {
                var end = Math.Min(cols, k0 + Fp8Block);
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
                var k = k0;
                for (; k + 16 <= end; k += 16)
                {
                    var codes = Vector128.LoadUnsafe(ref Unsafe.Add(ref w, k)).AsSByte();
                    var lo = WidenFp8(Avx2.ConvertToVector256Int32(codes));
                    var hi = WidenFp8(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(codes, 8)));
                    a0 = Fma.MultiplyAdd(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k)), a0);
                    c0 = Fma.MultiplyAdd(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k + 8)), c0);
                    if (n == 1) continue;
                    a1 = Fma.MultiplyAdd(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k)), a1);
                    c1 = Fma.MultiplyAdd(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k + 8)), c1);
                    a2 = Fma.MultiplyAdd(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k)), a2);
                    c2 = Fma.MultiplyAdd(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k + 8)), c2);
                    a3 = Fma.MultiplyAdd(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k)), a3);
                    c3 = Fma.MultiplyAdd(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k + 8)), c3);
                }
                float p0 = Vector256.Sum(a0 + c0), p1 = Vector256.Sum(a1 + c1), p2 = Vector256.Sum(a2 + c2), p3 = Vector256.Sum(a3 + c3);
                for (; k < end; k++)
                {
                    var wk = table[Unsafe.Add(ref w, k)];
                    p0 += wk * Unsafe.Add(ref x0, k);
                    p1 += wk * Unsafe.Add(ref x1, k);
                    p2 += wk * Unsafe.Add(ref x2, k);
                    p3 += wk * Unsafe.Add(ref x3, k);
                }
                var scale = _scales![scaleRow + b];
                s0 += p0 * scale;
                s1 += p1 * scale;
                s2 += p2 * scale;
                s3 += p3 * scale;
            }
            y[j] = s0;
            if (n > 1) y[yStride + j] = s1;
            if (n > 2) y[2 * yStride + j] = s2;
            if (n > 3) y[3 * yStride + j] = s3;
        }
    }

    /// <summary>
    /// Eight e4m3 codes (sign-extended to 32 bits) as float32, exactly, with no float32 subnormal on the way (a
    /// subnormal operand costs a microcode assist on x86): exponent and mantissa move to the top of float32's fields
    /// and the exponent is rebiased (e4m3's bias is 7, float32's 127). A code with exponent 0 (zero or subnormal,
    /// m/8 x 2^-6) is built as 2^-6 x (1 + m/8) and 2^-6 is subtracted, exactly. The sign is set last. The two NaN
    /// codes read as ±480 here and as NaN in the scalar tail (weights hold none).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenFp8(Vector256<int> codes)
    {
        var shifted = Avx2.ShiftLeftLogical(codes, 20);
        var sign = Avx2.And(shifted, Vector256.Create(int.MinValue));
        var fields = Avx2.And(shifted, Vector256.Create(0x07F00000));
        var subnormal = Avx2.CompareGreaterThan(Vector256.Create(1 << 23), fields);
        var bits = Avx2.Add(Avx2.Add(fields, Vector256.Create(120 << 23)), Avx2.And(subnormal, Vector256.Create(1 << 23)));
        var value = Avx.Subtract(bits.AsSingle(), Avx2.And(subnormal, Vector256.Create(BitConverter.SingleToInt32Bits(1f / 64))).AsSingle());
        return Avx2.Or(value.AsInt32(), sign).AsSingle();
    }
}
