using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Kernels;

/// <summary>
/// A [rows, cols] projection weight kept in memory in the checkpoint's type: BF16 as stored, two bytes a weight,
/// widened to float32 in registers while multiplying (a 16-bit shift); F32 as is. Other types (F16, FP8) are
/// widened to F32 when read. Products compute in float32, so results equal a float32 product of the widened
/// weights to float rounding.
/// </summary>
public sealed class PackedMatrix
{
    private readonly ushort[]? _bf16;
    private readonly float[]? _f32;

    public int Rows { get; }
    public int Cols { get; }

    public PackedMatrix(int rows, int cols, ushort[] bf16)
    {
        if (bf16.Length != (long)rows * cols) throw new ArgumentException("BF16 data does not match the shape");
        (Rows, Cols, _bf16) = (rows, cols, bf16);
    }

    public PackedMatrix(int rows, int cols, float[] f32)
    {
        if (f32.Length != (long)rows * cols) throw new ArgumentException("F32 data does not match the shape");
        (Rows, Cols, _f32) = (rows, cols, f32);
    }

    /// <summary>Whether the weights are kept as BF16 (else F32).</summary>
    public bool IsBf16 => _bf16 is not null;

    public long ByteSize => _bf16 is not null ? _bf16.LongLength * 2 : _f32!.LongLength * 4;

    /// <summary>Reads a [rows, cols] weight, keeping BF16 as BF16.</summary>
    public static PackedMatrix Read(CheckpointReader reader, string name, int rows, int cols) =>
        reader.ReadBf16(name, rows, cols) is { } bf16 ? new PackedMatrix(rows, cols, bf16) : new PackedMatrix(rows, cols, reader.ReadFloat32(name, rows, cols));

    /// <summary>The weight at [row, col] as float32.</summary>
    public float this[int row, int col] => _bf16 is not null ? Widen(_bf16[(long)row * Cols + col]) : _f32![(long)row * Cols + col];

    private static float Widen(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>
    /// y[r * yStride + j] = sum over k of x[r * Cols + k] * W[j, k], for the <paramref name="xRows"/> rows of x and
    /// the outputs j in [<paramref name="from"/>, <paramref name="to"/>). Each weight row is read once for every
    /// four rows of x while it sits in L1.
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, int xRows, Span<float> y, int yStride, int from, int to)
    {
        if (x.Length < xRows * Cols || to > Rows || from < 0 || y.Length < (xRows - 1) * yStride + to) throw new ArgumentOutOfRangeException(nameof(x));
        if (xRows == 1 && _bf16 is not null && Avx2.IsSupported && Fma.IsSupported && Cols >= 16)
        {
            OneRowBf16(x, y, from, to);
            return;
        }
        for (var j = from; j < to; j++)
            for (var r = 0; r < xRows; r += 4)
            {
                var n = Math.Min(4, xRows - r);
                if (n == 1)
                {
                    y[r * yStride + j] = Dot1(j, x.Slice(r * Cols));
                    continue;
                }
                Dot4(j, x.Slice(r * Cols), n, out var s0, out var s1, out var s2, out var s3);
                y[r * yStride + j] = s0;
                if (n > 1) y[(r + 1) * yStride + j] = s1;
                if (n > 2) y[(r + 2) * yStride + j] = s2;
                if (n > 3) y[(r + 3) * yStride + j] = s3;
            }
    }

    /// <summary>
    /// One row of x against BF16 weights, four weight rows at a time (decode: one token per expert, or a projection of
    /// one sequence). Sixteen weights load as eight 32-bit lanes of two BF16 each: the lane shifted left by 16 is
    /// the even weight as float32, the lane masked to its high half the odd one, so widening needs no shuffle; x is
    /// laid out to match once per call (each 16 inputs as 8 even, then 8 odd). Eight accumulators keep the FMA
    /// units fed.
    /// </summary>
    private void OneRowBf16(ReadOnlySpan<float> x, Span<float> y, int from, int to)
    {
        var cols = Cols;
        var whole = cols & ~15;
        var buffer = System.Buffers.ArrayPool<float>.Shared.Rent(whole);
        try
        {
            for (var k = 0; k < whole; k += 16)
                for (var i = 0; i < 8; i++)
                {
                    buffer[k + i] = x[k + 2 * i];
                    buffer[k + 8 + i] = x[k + 2 * i + 1];
                }
            ref var xp = ref MemoryMarshal.GetArrayDataReference(buffer);
            var high = Vector256.Create(unchecked((int)0xFFFF0000));
            var j = from;
            for (; j + 4 <= to; j += 4)
            {
                ref var w0 = ref Unsafe.As<ushort, int>(ref _bf16![(long)j * cols]);
                ref var w1 = ref Unsafe.As<ushort, int>(ref _bf16[(long)(j + 1) * cols]);
                ref var w2 = ref Unsafe.As<ushort, int>(ref _bf16[(long)(j + 2) * cols]);
                ref var w3 = ref Unsafe.As<ushort, int>(ref _bf16[(long)(j + 3) * cols]);
                Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
                for (var k = 0; k < whole; k += 16)
                {
                    var xe = Vector256.LoadUnsafe(ref Unsafe.Add(ref xp, k));
                    var xo = Vector256.LoadUnsafe(ref Unsafe.Add(ref xp, k + 8));
                    var r0 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w0, k / 2));
                    var r1 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w1, k / 2));
                    var r2 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w2, k / 2));
                    var r3 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w3, k / 2));
                    e0 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r0, 16).AsSingle(), xe, e0);
                    o0 = Fma.MultiplyAdd(Avx2.And(r0, high).AsSingle(), xo, o0);
                    e1 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r1, 16).AsSingle(), xe, e1);
                    o1 = Fma.MultiplyAdd(Avx2.And(r1, high).AsSingle(), xo, o1);
                    e2 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r2, 16).AsSingle(), xe, e2);
                    o2 = Fma.MultiplyAdd(Avx2.And(r2, high).AsSingle(), xo, o2);
                    e3 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r3, 16).AsSingle(), xe, e3);
                    o3 = Fma.MultiplyAdd(Avx2.And(r3, high).AsSingle(), xo, o3);
                }
                y[j] = Vector256.Sum(e0 + o0) + Tail(j, x, whole);
                y[j + 1] = Vector256.Sum(e1 + o1) + Tail(j + 1, x, whole);
                y[j + 2] = Vector256.Sum(e2 + o2) + Tail(j + 2, x, whole);
                y[j + 3] = Vector256.Sum(e3 + o3) + Tail(j + 3, x, whole);
            }
            for (; j < to; j++) y[j] = Dot1(j, x);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(buffer);
        }
    }

    /// <summary>Weight row <paramref name="j"/> times x over the columns from <paramref name="k"/> on (past the last whole 16).</summary>
    private float Tail(int j, ReadOnlySpan<float> x, int k)
    {
        var s = 0f;
        for (; k < Cols; k++) s += Widen(_bf16![(long)j * Cols + k]) * x[k];
        return s;
    }

    /// <summary>The dot product of weight row <paramref name="j"/> with one row of x (decode: one token per expert).</summary>
    private float Dot1(int j, ReadOnlySpan<float> x)
    {
        var cols = Cols;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        var k = 0;
        var s = 0f;
        if (Avx2.IsSupported && Fma.IsSupported && cols >= 16)
        {
            // Two accumulators: two independent FMA chains keep both FMA units busy.
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            if (_bf16 is not null)
            {
                ref var w = ref _bf16[(long)j * cols];
                for (; k + 16 <= cols; k += 16)
                {
                    var raw = Vector256.LoadUnsafe(ref Unsafe.Add(ref w, k));
                    var lo = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(raw.GetLower()), 16).AsSingle();
                    var hi = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(raw.GetUpper()), 16).AsSingle();
                    a0 = Fma.MultiplyAdd(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k)), a0);
                    a1 = Fma.MultiplyAdd(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k + 8)), a1);
                }
            }
            else
            {
                ref var w = ref _f32![(long)j * cols];
                for (; k + 16 <= cols; k += 16)
                {
                    a0 = Fma.MultiplyAdd(Vector256.LoadUnsafe(ref Unsafe.Add(ref w, k)), Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k)), a0);
                    a1 = Fma.MultiplyAdd(Vector256.LoadUnsafe(ref Unsafe.Add(ref w, k + 8)), Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k + 8)), a1);
                }
            }
            s = Vector256.Sum(a0 + a1);
        }
        for (; k < cols; k++) s += (_bf16 is not null ? Widen(_bf16[(long)j * cols + k]) : _f32![(long)j * cols + k]) * Unsafe.Add(ref x0, k);
        return s;
    }

    /// <summary>Dot products of weight row <paramref name="j"/> with up to four consecutive rows of x.</summary>
    private void Dot4(int j, ReadOnlySpan<float> x, int n, out float s0, out float s1, out float s2, out float s3)
    {
        var cols = Cols;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, n > 1 ? cols : 0);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : 0);
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : 0);
        var k = 0;
        s0 = s1 = s2 = s3 = 0;
        if (Avx2.IsSupported && Fma.IsSupported && cols >= 8)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            if (_bf16 is not null)
            {
                ref var w = ref _bf16[(long)j * cols];
                for (; k + 8 <= cols; k += 8)
                {
                    var raw = Vector128.LoadUnsafe(ref Unsafe.Add(ref w, k));
                    var wv = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(raw), 16).AsSingle();
                    a0 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k)), a0);
                    a1 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k)), a1);
                    a2 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k)), a2);
                    a3 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k)), a3);
                }
            }
            else
            {
                ref var w = ref _f32![(long)j * cols];
                for (; k + 8 <= cols; k += 8)
                {
                    var wv = Vector256.LoadUnsafe(ref Unsafe.Add(ref w, k));
                    a0 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k)), a0);
                    a1 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k)), a1);
                    a2 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k)), a2);
                    a3 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k)), a3);
                }
            }
            s0 = Vector256.Sum(a0);
            s1 = Vector256.Sum(a1);
            s2 = Vector256.Sum(a2);
            s3 = Vector256.Sum(a3);
        }
        // The portable path, and the tail past the last whole vector.
        for (; k < cols; k++)
        {
            var wk = _bf16 is not null ? Widen(_bf16[(long)j * cols + k]) : _f32![(long)j * cols + k];
            s0 += wk * Unsafe.Add(ref x0, k);
            s1 += wk * Unsafe.Add(ref x1, k);
            s2 += wk * Unsafe.Add(ref x2, k);
            s3 += wk * Unsafe.Add(ref x3, k);
        }
    }
}
