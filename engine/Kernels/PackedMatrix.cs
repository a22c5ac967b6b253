using System.Numerics.Tensors;
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
/// BF16 rows are reordered once, at construction, within each run of 16 weights (32 where the AVX-512 kernels run,
/// PackedMatrix.Avx512.cs): weights i and i+8 (i+16) share a 32-bit lane (i in the low half). A vector of lanes then
/// widens to two float32 vectors with one shift and one mask, no shuffle, and those match x[k..k+8] and x[k+8..k+16]
/// (x[k..k+16] and x[k+16..k+32]) as x lies in memory. Columns past the last whole run keep their order.
/// </para>
/// </summary>
public sealed unsafe partial class PackedMatrix : IDisposable
{
    /// <summary>The weights in native memory (<see cref="WeightMemory"/>): BF16, float32 or FP8 codes, by which of these is set.</summary>
    private readonly WeightBlock _block;

    /// <summary>The block's address, for the kernels' row pointers.</summary>
    private readonly nint _data;

    private readonly bool _isBf16;
    private readonly bool _isFp8;

    /// <summary>FP8 block scales, [ceil(Rows / 128), ceil(Cols / 128)]: the factor that dequantises.</summary>
    private readonly float[]? _scales;

    private readonly int _scaleCols;

    private const int Fp8Block = CheckpointReader.Fp8BlockSize;

    public int Rows { get; }
    public int Cols { get; }

    /// <summary>Columns in whole runs (the reordered part of a BF16 row).</summary>
    private readonly int _whole;

    /// <summary>The length of a reordered BF16 run: 32 where the AVX-512 kernels run, 16 for AVX2.</summary>
    private readonly int _run = 16;

    /// <summary>Whether BF16 rows are laid out for the AVX-512 kernels (512-bit vectors, accelerated on this CPU).</summary>
    public static bool WideByDefault => Avx512F.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>Copies <paramref name="bf16"/> (row-major, as in the checkpoint) into native memory, reordered.</summary>
    public PackedMatrix(int rows, int cols, ReadOnlySpan<ushort> bf16) : this(rows, cols, bf16, WideByDefault)
    {
    }

    /// <summary>As the public constructor, with the layout chosen: <paramref name="wide"/> for the AVX-512 kernels (tests run both).</summary>
    internal PackedMatrix(int rows, int cols, ReadOnlySpan<ushort> bf16, bool wide)
    {
        if (bf16.Length != (long)rows * cols) throw new ArgumentException("BF16 data does not match the shape");
        _run = wide ? 32 : 16;
        (Rows, Cols, _isBf16, _whole) = (rows, cols, true, cols & ~(_run - 1));
        _block = WeightMemory.Allocate((long)rows * cols * 2);
        _data = _block.Address;
        var held = Bf16Values;
        bf16.CopyTo(held);
        var half = _run / 2;
        Span<ushort> run = stackalloc ushort[_run];
        for (long r = 0; r < rows; r++)
            for (var k = 0; k < _whole; k += _run)
            {
                var block = held.Slice((int)(r * cols + k), _run);
                block.CopyTo(run);
                for (var i = 0; i < half; i++)
                {
                    block[2 * i] = run[i];
                    block[2 * i + 1] = run[i + half];
                }
            }
    }

    public PackedMatrix(int rows, int cols, ReadOnlySpan<float> f32)
    {
        if (f32.Length != (long)rows * cols) throw new ArgumentException("F32 data does not match the shape");
        (Rows, Cols, _whole) = (rows, cols, cols & ~15);
        _block = WeightMemory.Allocate((long)rows * cols * 4);
        _data = _block.Address;
        f32.CopyTo(F32Values);
    }

    /// <summary>Copies FP8 e4m3 codes (row-major) into native memory, with their block scales ([ceil(rows / 128), ceil(cols / 128)]).</summary>
    public PackedMatrix(int rows, int cols, ReadOnlySpan<byte> fp8, float[] scales)
    {
        if (fp8.Length != (long)rows * cols) throw new ArgumentException("FP8 data does not match the shape");
        _scaleCols = (cols + Fp8Block - 1) / Fp8Block;
        if (scales.Length != (long)(rows + Fp8Block - 1) / Fp8Block * _scaleCols) throw new ArgumentException("FP8 block scales do not match the shape");
        (Rows, Cols, _isFp8, _scales, _whole) = (rows, cols, true, scales, cols & ~15);
        _block = WeightMemory.Allocate((long)rows * cols);
        _data = _block.Address;
        fp8.CopyTo(Fp8Codes);
    }

    private Span<ushort> Bf16Values => _block.Span<ushort>((long)Rows * Cols);
    private Span<float> F32Values => _block.Span<float>((long)Rows * Cols);
    private Span<byte> Fp8Codes => _block.Span<byte>((long)Rows * Cols);

    /// <summary>Whether the weights are kept as BF16.</summary>
    public bool IsBf16 => _isBf16;

    /// <summary>Whether the weights are kept as FP8 e4m3 with block scales.</summary>
    public bool IsFp8 => _isFp8;

    /// <summary>
    /// Whether the kernel outruns libtorch's float32 GEMM at any number of rows: BF16 in the AVX-512 layout
    /// (bench --kernel-rates --prefill: 90 to 165 G multiply-adds/s at 64 to 512 rows where libtorch reads 45 to 82 on a
    /// float32 copy). Otherwise (AVX2, FP8, F32) the kernel is for few rows and libtorch's GEMM takes larger batches.
    /// </summary>
    public bool FastAtAnyRows => _isBf16 && _run == 32 && Vectorised;

    /// <summary>Bytes of the weights (and FP8 block scales) held.</summary>
    public long ByteSize => (long)Rows * Cols * (_isBf16 ? 2 : _isFp8 ? 1 : 4) + (_scales?.LongLength * 4 ?? 0);

    /// <summary>Returns the native memory; the matrix must not be used after.</summary>
    public void Dispose() => _block.Dispose();

    /// <summary>Reads a [rows, cols] weight, keeping BF16 as BF16 and FP8 as FP8.</summary>
    public static PackedMatrix Read(CheckpointReader reader, string name, int rows, int cols) =>
        reader.ReadBf16(name, rows, cols) is { } bf16 ? new PackedMatrix(rows, cols, bf16)
        : reader.ReadFp8(name, rows, cols) is { } fp8 ? new PackedMatrix(rows, cols, fp8.Codes, fp8.Scales)
        : new PackedMatrix(rows, cols, reader.ReadFloat32(name, rows, cols));

    /// <summary>The weight at [row, col] as float32.</summary>
    public float this[int row, int col] =>
        _isBf16 ? Widen(Bf16Values[row * Cols + Stored(col)])
        : _isFp8 ? DTypes.Fp8E4M3Values[Fp8Codes[row * Cols + col]] * _scales![row / Fp8Block * _scaleCols + col / Fp8Block]
        : F32Values[row * Cols + col];

    /// <summary>Where column <paramref name="col"/> of a BF16 row is stored.</summary>
    private int Stored(int col)
    {
        if (col >= _whole) return col;
        var half = _run / 2;
        var i = col & (_run - 1);
        return col - i + (i < half ? 2 * i : 2 * (i - half) + 1);
    }

    private static float Widen(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Whether the kernels run vectorised here (AVX2 and FMA); elsewhere a portable loop computes the same, slowly.</summary>
    public static bool Accelerated => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Takes the portable path even where AVX2 runs (tests run it here).</summary>
    internal bool Portable { get; init; }

    private bool Vectorised => Accelerated && !Portable;

    /// <summary>Bytes of BF16 weight rows a block of several x tiles works on: well inside a core's L2.</summary>
    private const int BlockBytes = 96 << 10;

    /// <summary>
    /// y[r * yStride + j] = sum over k of x[r * Cols + k] * W[j, k], for the <paramref name="xRows"/> rows of x and
    /// the outputs j in [<paramref name="from"/>, <paramref name="to"/>).
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, int xRows, Span<float> y, int yStride, int from, int to)
    {
        if (x.Length < xRows * Cols || to > Rows || from < 0 || y.Length < (xRows - 1) * yStride + to) throw new ArgumentOutOfRangeException(nameof(x));
        if (_isBf16 && Vectorised && _whole > 0)
        {
            // Blocks of weight rows small enough to stay in the core's cache while every tile of x rows passes over
            // them: with more than four rows, each tile would otherwise stream the whole range from memory again.
            var block = xRows <= 4 ? to - from : Math.Clamp(BlockBytes / (2 * Cols) & ~3, 4, 64);
            for (var b = from; b < to; b += block)
            {
                var end = Math.Min(to, b + block);
                for (var r = 0; r < xRows; r += 4)
                {
                    var xs = x.Slice(r * Cols);
                    var ys = y.Slice(r * yStride);
                    if (_run == 32) TileWide(xs, xRows - r, ys, yStride, b, end);
                    else
                        switch (xRows - r)
                        {
                            case 1: OneRowBf16(xs, ys, b, end); break;
                            case 2: TilesBf16<TwoRows>(xs, ys, yStride, b, end); break;
                            case 3: TilesBf16<ThreeRows>(xs, ys, yStride, b, end); break;
                            default: TilesBf16<FourRows>(xs, ys, yStride, b, end); break;
                        }
                }
            }
            // Columns past the last whole run, outside the kernels so that no call keeps their accumulators off registers.
            if (_whole < Cols)
                for (var r = 0; r < xRows; r++)
                    for (var j = from; j < to; j++)
                        y[r * yStride + j] += Tail(j, x.Slice(r * Cols, Cols));
            return;
        }
        if (_isFp8 && Vectorised)
        {
            for (var r = 0; r < xRows; r += 4)
                RowsFp8(x.Slice(r * Cols), Math.Min(4, xRows - r), y.Slice(r * yStride), yStride, from, to);
            return;
        }
        if (!Vectorised)
        {
            MultiplyPortable(x, xRows, y, yStride, from, to);
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
            // The next four rows, fetched while these stream: 128 bytes of them for the 128 of these an iteration reads.
            var ahead = (byte*)Unsafe.AsPointer(ref w0) + 8L * cols;
            Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
            for (var k = 0; k < whole; k += 16)
            {
                Sse.Prefetch0(ahead + 8 * k);
                Sse.Prefetch0(ahead + 8 * k + 64);
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
            y[j] = Vector256.Sum(e0 + o0);
            y[j + 1] = Vector256.Sum(e1 + o1);
            y[j + 2] = Vector256.Sum(e2 + o2);
            y[j + 3] = Vector256.Sum(e3 + o3);
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
            y[j] = Vector256.Sum(e + o);
        }
    }

    /// <summary>The number of x rows of a tile, as a type: the JIT compiles one body per count, the unused rows' code removed.</summary>
    private interface IRowCount
    {
        static abstract int N { get; }
    }

    private struct TwoRows : IRowCount
    {
        public static int N => 2;
    }

    private struct ThreeRows : IRowCount
    {
        public static int N => 3;
    }

    private struct FourRows : IRowCount
    {
        public static int N => 4;
    }

    /// <summary>
    /// Two to four rows of x against BF16 weights in tiles of those rows by two weight rows (prefill chunks of an
    /// expert, decode of a batch): each weight widened once for every row and each x vector loaded once for both weight
    /// rows. Even and odd halves of a run accumulate apart, so that no accumulator waits on the FMA before it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void TilesBf16<TRows>(ReadOnlySpan<float> x, Span<float> y, int yStride, int from, int to) where TRows : struct, IRowCount
    {
        var n = TRows.N;
        var cols = Cols;
        var whole = _whole;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, cols);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : cols);
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : cols);
        var high = Vector256.Create(unchecked((int)0xFFFF0000));
        for (var j = from; j < to; j += 2)
        {
            var pair = j + 1 < to;
            ref var wa = ref Lane(j);
            ref var wb = ref Lane(pair ? j + 1 : j);
            // The next two rows, fetched while these stream: 64 bytes of them for the 64 of these an iteration reads.
            var ahead = (byte*)Unsafe.AsPointer(ref wa) + 4L * cols;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
            for (var k = 0; k < whole; k += 16)
            {
                Sse.Prefetch0(ahead + 4 * k);
                var ra = Vector256.LoadUnsafe(ref Unsafe.Add(ref wa, k / 2));
                var rb = Vector256.LoadUnsafe(ref Unsafe.Add(ref wb, k / 2));
                var la = Avx2.ShiftLeftLogical(ra, 16).AsSingle();
                var ha = Avx2.And(ra, high).AsSingle();
                var lb = Avx2.ShiftLeftLogical(rb, 16).AsSingle();
                var hb = Avx2.And(rb, high).AsSingle();
                var xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k));
                var xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, k + 8));
                a0 = Fma.MultiplyAdd(la, xa, a0);
                c0 = Fma.MultiplyAdd(ha, xb, c0);
                b0 = Fma.MultiplyAdd(lb, xa, b0);
                d0 = Fma.MultiplyAdd(hb, xb, d0);
                xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k));
                xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x1, k + 8));
                a1 = Fma.MultiplyAdd(la, xa, a1);
                c1 = Fma.MultiplyAdd(ha, xb, c1);
                b1 = Fma.MultiplyAdd(lb, xa, b1);
                d1 = Fma.MultiplyAdd(hb, xb, d1);
                if (n > 2)
                {
                    xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k));
                    xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x2, k + 8));
                    a2 = Fma.MultiplyAdd(la, xa, a2);
                    c2 = Fma.MultiplyAdd(ha, xb, c2);
                    b2 = Fma.MultiplyAdd(lb, xa, b2);
                    d2 = Fma.MultiplyAdd(hb, xb, d2);
                }
                if (n > 3)
                {
                    xa = Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k));
                    xb = Vector256.LoadUnsafe(ref Unsafe.Add(ref x3, k + 8));
                    a3 = Fma.MultiplyAdd(la, xa, a3);
                    c3 = Fma.MultiplyAdd(ha, xb, c3);
                    b3 = Fma.MultiplyAdd(lb, xa, b3);
                    d3 = Fma.MultiplyAdd(hb, xb, d3);
                }
            }
            y[j] = Vector256.Sum(a0 + c0);
            y[yStride + j] = Vector256.Sum(a1 + c1);
            if (n > 2) y[2 * yStride + j] = Vector256.Sum(a2 + c2);
            if (n > 3) y[3 * yStride + j] = Vector256.Sum(a3 + c3);
            if (!pair) continue;
            y[j + 1] = Vector256.Sum(b0 + d0);
            y[yStride + j + 1] = Vector256.Sum(b1 + d1);
            if (n > 2) y[2 * yStride + j + 1] = Vector256.Sum(b2 + d2);
            if (n > 3) y[3 * yStride + j + 1] = Vector256.Sum(b3 + d3);
        }
    }

    /// <summary>The first stored lane of BF16 row <paramref name="j"/>, as 32-bit lanes of two weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref int Lane(int j) => ref Unsafe.AsRef<int>((void*)(_data + (nint)j * Cols * 2));

    /// <summary>BF16 row <paramref name="j"/> times x over the columns past the last whole 16 (stored in order).</summary>
    private float Tail(int j, ReadOnlySpan<float> x)
    {
        var s = 0f;
        for (var k = _whole; k < Cols; k++) s += Widen(Bf16Values[j * Cols + k]) * x[k];
        return s;
    }

    /// <summary>
    /// The portable path, where AVX2 does not run (Arm servers, say): each weight row widened to float32 once, then
    /// its dot product with every row of x in the machine's own vectors (<see cref="TensorPrimitives.Dot"/>).
    /// </summary>
    private void MultiplyPortable(ReadOnlySpan<float> x, int xRows, Span<float> y, int yStride, int from, int to)
    {
        var pool = System.Buffers.ArrayPool<float>.Shared;
        var buffer = pool.Rent(Cols);
        try
        {
            var row = buffer.AsSpan(0, Cols);
            for (var j = from; j < to; j++)
            {
                WidenRow(j, row);
                for (var r = 0; r < xRows; r++) y[r * yStride + j] = TensorPrimitives.Dot(row, x.Slice(r * Cols, Cols));
            }
        }
        finally
        {
            pool.Return(buffer);
        }
    }

    /// <summary>
    /// Dot products of weight row <paramref name="j"/> with up to four consecutive rows of x, vectorised: F32 weights,
    /// and BF16 rows shorter than one run.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Dot4(int j, ReadOnlySpan<float> x, int n, out float s0, out float s1, out float s2, out float s3)
    {
        var cols = Cols;
        ref var x0 = ref MemoryMarshal.GetReference(x);
        ref var x1 = ref Unsafe.Add(ref x0, n > 1 ? cols : 0);
        ref var x2 = ref Unsafe.Add(ref x0, n > 2 ? 2 * cols : 0);
        ref var x3 = ref Unsafe.Add(ref x0, n > 3 ? 3 * cols : 0);
        var k = 0;
        s0 = s1 = s2 = s3 = 0;
        if (!_isBf16 && !_isFp8 && Vectorised && cols >= 8)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            ref var w = ref F32Values[j * cols];
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
        // The tail past the last whole vector, and BF16 rows shorter than one run.
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
