using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Kernels;

/// <summary>
/// A [rows, cols] projection weight kept in memory in the checkpoint's type: BF16 as stored, two bytes a weight,
/// widened to float32 in registers while multiplying; FP8 (e4m3) as stored, one byte a weight, widened in registers
/// and scaled once per 128-column block of a row (DeepSeek-V3's 128x128 block scales; PackedMatrix.Fp8.cs); F32 as is.
/// F16 is widened to F32 when read. Products compute in float32, so results equal a float32 product of the
/// dequantised weights to float rounding.
/// <para>
/// BF16 rows are reordered once, at construction, within each run of 16 weights: weights i and i+8 share a 32-bit
/// lane (i in the low half). Eight lanes then widen to two float32 vectors with one shift and one mask, no
/// shuffle, and those match x[k..k+8] and x[k+8..k+16] as x lies in memory. Columns past the last whole 16 keep
/// their order.
/// </para>
/// </summary>
public sealed partial class PackedMatrix
{
    private readonly ushort[]? _bf16;
    private readonly float[]? _f32;
    private readonly byte[]? _fp8;

    /// <summary>FP8 block scales, [ceil(Rows / 128), ceil(Cols / 128)]: the factor that dequantises.</summary>
    private readonly float[]? _scales;

    private readonly int _scaleCols;

    private const int Fp8Block = CheckpointReader.Fp8BlockSize;

    public int Rows { get; }
    public int Cols { get; }

    /// <summary>Columns in whole runs of 16 (the reordered part of a BF16 row).</summary>
    private readonly int _whole;

    /// <summary>Takes <paramref name="bf16"/> (row-major, as in the checkpoint) and reorders it in place.</summary>
    public PackedMatrix(int rows, int cols, ushort[] bf16)
    {
        if (bf16.Length != (long)rows * cols) throw new ArgumentException("BF16 data does not match the shape");
        (Rows, Cols, _bf16, _whole) = (rows, cols, bf16, cols & ~15);
        Span<ushort> run = stackalloc ushort[16];
        for (long r = 0; r < rows; r++)
            for (var k = 0; k < _whole; k += 16)
            {
                var block = bf16.AsSpan((int)(r * cols + k), 16);
                block.CopyTo(run);
                for (var i = 0; i < 8; i++)
                {
                    block[2 * i] = run[i];
                    block[2 * i + 1] = run[i + 8];
                }
            }
    }

    public PackedMatrix(int rows, int cols, float[] f32)
    {
        if (f32.Length != (long)rows * cols) throw new ArgumentException("F32 data does not match the shape");
        (Rows, Cols, _f32, _whole) = (rows, cols, f32, cols & ~15);
    }

    /// <summary>Takes FP8 e4m3 codes (row-major) and their block scales ([ceil(rows / 128), ceil(cols / 128)]).</summary>
    public PackedMatrix(int rows, int cols, byte[] fp8, float[] scales)
    {
        if (fp8.Length != (long)rows * cols) throw new ArgumentException("FP8 data does not match the shape");
        _scaleCols = (cols + Fp8Block - 1) / Fp8Block;
        if (scales.Length != (long)(rows + Fp8Block - 1) / Fp8Block * _scaleCols) throw new ArgumentException("FP8 block scales do not match the shape");
        (Rows, Cols, _fp8, _scales, _whole) = (rows, cols, fp8, scales, cols & ~15);
    }

    /// <summary>Whether the weights are kept as BF16.</summary>
    public bool IsBf16 => _bf16 is not null;

    /// <summary>Whether the weights are kept as FP8 e4m3 with block scales.</summary>
    public bool IsFp8 => _fp8 is not null;

    public long ByteSize => _bf16 is not null ? _bf16.LongLength * 2 : _fp8 is not null ? _fp8.LongLength + _scales!.LongLength * 4 : _f32!.LongLength * 4;

    /// <summary>Reads a [rows, cols] weight, keeping BF16 as BF16 and FP8 as FP8.</summary>
    public static PackedMatrix Read(CheckpointReader reader, string name, int rows, int cols) =>
        reader.ReadBf16(name, rows, cols) is { } bf16 ? new PackedMatrix(rows, cols, bf16)
        : reader.ReadFp8(name, rows, cols) is { } fp8 ? new PackedMatrix(rows, cols, fp8.Codes, fp8.Scales)
        : new PackedMatrix(rows, cols, reader.ReadFloat32(name, rows, cols));

    /// <summary>The weight at [row, col] as float32.</summary>
    public float this[int row, int col] =>
        _bf16 is not null ? Widen(_bf16[(long)row * Cols + Stored(col)])
        : _fp8 is not null ? DTypes.Fp8E4M3Values[_fp8[(long)row * Cols + col]] * _scales![row / Fp8Block * _scaleCols + col / Fp8Block]
        : _f32![(long)row * Cols + col];

    /// <summary>Where column <paramref name="col"/> of a BF16 row is stored.</summary>
    private int Stored(int col) => col >= _whole ? col : (col & ~15) + ((col & 15) < 8 ? 2 * (col & 7) : 2 * (col & 7) + 1);

    private static float Widen(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    private static bool Vectorised => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// y[r * yStride + j] = sum over k of x[r * Cols + k] * W[j, k], for the <paramref name="xRows"/> rows of x and
    /// the outputs j in [<paramref name="from"/>, <paramref name="to"/>).
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, int xRows, Span<float> y, int yStride, int from, int to)
    {
        if (x.Length < xRows * Cols || to > Rows || from < 0 || y.Length < (xRows - 1) * yStride + to) throw new ArgumentOutOfRangeException(nameof(x));
        if (_bf16 is not null && Vectorised && _whole > 0)
        {
            if (xRows == 1) OneRowBf16(x, y, from, to);
            else
                for (var r = 0; r < xRows; r += 4)
                    TilesBf16(x.Slice(r * Cols), Math.Min(4, xRows - r), y.Slice(r * yStride), yStride, from, to);
            return;
        }
        if (_fp8 is not null && Vectorised)
        {
            for (var r = 0; r < xRows; r += 4)
                RowsFp8(x.Slice(r * Cols), Math.Min(4, xRows - r), y.Slice(r * yStride), yStride, from, to);
            return;
        }
        for (var j = from; j < to; j++)
            for (var r = 0; r < xRows; r += 4)
            {
                var n = Math.Min(4, xRows - r);
                Dot4(j, x.Slice(r * Cols), n, out var s0, out var s1, out var s2, out var s3);
                y[r * yStride + j] = s0;
                if (n > 1) y[(r + 1) * yStride + j] = s1;
                if (n > 2) y[(r + 2) * yStride + j] = s2;
                if (n > 3) y[(r + 3) * yStride + j] = s3;
            }
    }

    /// <summary>
    /// One row of x against BF16 weights, four weight rows at a time (decode: one token per expert, or a projection
    /// of one sequence): eight accumulators, two per weight row, keep the FMA units fed while weights stream.
    /// </summary>
    private void OneRowBf16(ReadOnlySpan<float> x, Span<float> y, int from, int to)
    {
        var cols = Cols;
        var whole = _whole;
        ref var xp = ref MemoryMarshal.GetReference(x);
        var high = Vector256.Create(unchecked((int)0xFFFF0000));
        var j = from;
        for (; j + 4 <= to; j += 4)
        {
            ref var w0 = ref Lane(j);
            ref var w1 = ref Lane(j + 1);
            ref var w2 = ref Lane(j + 2);
            ref var w3 = ref Lane(j + 3);
            Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
            for (var k = 0; k < whole; k += 16)
            {
                var xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref xp, k));
                var xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref xp, k + 8));
                var r0 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w0, k / 2));
                var r1 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w1, k / 2));
                var r2 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w2, k / 2));
                var r3 = Vector256.LoadUnsafe(ref Unsafe.Add(ref w3, k / 2));
                e0 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r0, 16).AsSingle(), xa, e0);
                o0 = Fma.MultiplyAdd(Avx2.And(r0, high).AsSingle(), xb, o0);
                e1 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r1, 16).AsSingle(), xa, e1);
                o1 = Fma.MultiplyAdd(Avx2.And(r1, high).AsSingle(), xb, o1);
                e2 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r2, 16).AsSingle(), xa, e2);
                o2 = Fma.MultiplyAdd(Avx2.And(r2, high).AsSingle(), xb, o2);
                e3 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r3, 16).AsSingle(), xa, e3);
                o3 = Fma.MultiplyAdd(Avx2.And(r3, high).AsSingle(), xb, o3);
            }
            y[j] = Vector256.Sum(e0 + o0) + Tail(j, x);
            y[j + 1] = Vector256.Sum(e1 + o1) + Tail(j + 1, x);
            y[j + 2] = Vector256.Sum(e2 + o2) + Tail(j + 2, x);
            y[j + 3] = Vector256.Sum(e3 + o3) + Tail(j + 3, x);
        }
        for (; j < to; j++)
        {
            ref var w = ref Lane(j);
            Vector256<float> e = default, o = default;
            for (var k = 0; k < whole; k += 16)
            {
                var r = Vector256.LoadUnsafe(ref Unsafe.Add(ref w, k / 2));
                e = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(r, 16).AsSingle(), Vector256.LoadUnsafe(ref Unsafe.Add(ref xp, k)), e);
                o = Fma.MultiplyAdd(Avx2.And(r, high).AsSingle(), Vector256.LoadUnsafe(ref Unsafe.Add(ref xp, k + 8)), o);
            }
            y[j] = Vector256.Sum(e + o) + Tail(j, x);
        }
    }

    /// <summary>
    /// Up to four rows of x against BF16 weights in tiles of four x rows by two weight rows: eight accumulators, each
    /// weight widened once for four rows and each x vector loaded once for two weight rows (prefill chunks of an
    /// expert, decode of a batch). With fewer than four rows the missing ones repeat the last and are not stored.
    /// </summary>
    private void TilesBf16(ReadOnlySpan<float> x, int n, Span<float> y, int yStride, int from, int to)
    {
        var cols = Cols;
        var whole = _whole;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, n > 1 ? cols : 0);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : (n > 1 ? cols : 0));
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : (n > 2 ? 2 * cols : (n > 1 ? cols : 0)));
        var high = Vector256.Create(unchecked((int)0xFFFF0000));
        for (var j = from; j < to; j += 2)
        {
            var pair = j + 1 < to;
            ref var wa = ref Lane(j);
            ref var wb = ref Lane(pair ? j + 1 : j);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (var k = 0; k < whole; k += 16)
            {
                var ra = Vector256.LoadUnsafe(ref Unsafe.Add(ref wa, k / 2));
                var rb = Vector256.LoadUnsafe(ref Unsafe.Add(ref wb, k / 2));
                var la = Avx2.ShiftLeftLogical(ra, 16).AsSingle();
                var ha = Avx2.And(ra, high).AsSingle();
                var lb = Avx2.ShiftLeftLogical(rb, 16).AsSingle();
                var hb = Avx2.And(rb, high).AsSingle();
                var xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k));
                var xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k + 8));
                a0 = Fma.MultiplyAdd(ha, xb, Fma.MultiplyAdd(la, xa, a0));
                b0 = Fma.MultiplyAdd(hb, xb, Fma.MultiplyAdd(lb, xa, b0));
                xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k));
                xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k + 8));
                a1 = Fma.MultiplyAdd(ha, xb, Fma.MultiplyAdd(la, xa, a1));
                b1 = Fma.MultiplyAdd(hb, xb, Fma.MultiplyAdd(lb, xa, b1));
                xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k));
                xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k + 8));
                a2 = Fma.MultiplyAdd(ha, xb, Fma.MultiplyAdd(la, xa, a2));
                b2 = Fma.MultiplyAdd(hb, xb, Fma.MultiplyAdd(lb, xa, b2));
                xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k));
                xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k + 8));
                a3 = Fma.MultiplyAdd(ha, xb, Fma.MultiplyAdd(la, xa, a3));
                b3 = Fma.MultiplyAdd(hb, xb, Fma.MultiplyAdd(lb, xa, b3));
            }
            Store(y, yStride, 0, j, a0, b0, pair, x);
            if (n > 1) Store(y, yStride, 1, j, a1, b1, pair, x);
            if (n > 2) Store(y, yStride, 2, j, a2, b2, pair, x);
            if (n > 3) Store(y, yStride, 3, j, a3, b3, pair, x);
        }
    }

    private void Store(Span<float> y, int yStride, int r, int j, Vector256<float> a, Vector256<float> b, bool pair, ReadOnlySpan<float> x)
    {
        var row = x.Slice(r * Cols, Cols);
        y[r * yStride + j] = Vector256.Sum(a) + Tail(j, row);
        if (pair) y[r * yStride + j + 1] = Vector256.Sum(b) + Tail(j + 1, row);
    }

    /// <summary>The first stored lane of BF16 row <paramref name="j"/>, as 32-bit lanes of two weights.</summary>
    private ref int Lane(int j) => ref Unsafe.As<ushort, int>(ref _bf16![(long)j * Cols]);

    /// <summary>BF16 row <paramref name="j"/> times x over the columns past the last whole 16 (stored in order).</summary>
    private float Tail(int j, ReadOnlySpan<float> x)
    {
        var s = 0f;
        for (var k = _whole; k < Cols; k++) s += Widen(_bf16![(long)j * Cols + k]) * x[k];
        return s;
    }

    /// <summary>
    /// Dot products of weight row <paramref name="j"/> with up to four consecutive rows of x: F32 weights (vectorised)
    /// and the portable path for every type.
    /// </summary>
    private void Dot4(int j, ReadOnlySpan<float> x, int n, out float s0, out float s1, out float s2, out float s3)
    {
        var cols = Cols;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, n > 1 ? cols : 0);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : 0);
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : 0);
        var k = 0;
        s0 = s1 = s2 = s3 = 0;
        if (_f32 is not null && Vectorised && cols >= 8)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            ref var w = ref _f32[(long)j * cols];
            for (; k + 8 <= cols; k += 8)
            {
                var wv = Vector256.LoadUnsafe(ref Unsafe.Add(ref w, k));
                a0 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k)), a0);
                a1 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k)), a1);
                a2 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k)), a2);
                a3 = Fma.MultiplyAdd(wv, Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k)), a3);
            }
            s0 = Vector256.Sum(a0);
            s1 = Vector256.Sum(a1);
            s2 = Vector256.Sum(a2);
            s3 = Vector256.Sum(a3);
        }
        // The portable path, and the tail past the last whole vector.
        for (; k < cols; k++)
        {
            var wk = this[j, k];
            s0 += wk * Unsafe.Add(ref x0, k);
            s1 += wk * Unsafe.Add(ref x1, k);
            s2 += wk * Unsafe.Add(ref x2, k);
            s3 += wk * Unsafe.Add(ref x3, k);
        }
    }
}
