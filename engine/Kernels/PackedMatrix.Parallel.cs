using System.Runtime.Intrinsics;
using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Kernels;

/// <summary>Whole-matrix work of <see cref="PackedMatrix"/> spread over the cores, and widening back to float32.</summary>
public sealed unsafe partial class PackedMatrix
{
    /// <summary>Output rows per work item at least: fewer rows cost more in scheduling than they save.</summary>
    private const int MinRowsPerItem = 16;

    /// <summary>
    /// y[r * Rows + j] = sum over k of x[r * Cols + k] * W[j, k] for every output j, the outputs split into a few
    /// contiguous runs per core so that each thread streams long runs of weights.
    /// </summary>
    public void MultiplyAll(ReadOnlySpan<float> x, int xRows, Span<float> y)
    {
        if (x.Length < (long)xRows * Cols || y.Length < (long)xRows * Rows) throw new ArgumentOutOfRangeException(nameof(x));
        var items = Items();
        if (items == 1)
        {
            Multiply(x, xRows, y, Rows, 0, Rows);
            return;
        }
        fixed (float* xp = x, yp = y)
        {
            nint xa = (nint)xp, ya = (nint)yp;
            var n = x.Length;
            var m = y.Length;
            KernelThreads.For(items, i =>
            {
                var (from, to) = Range(i, items);
                Multiply(new ReadOnlySpan<float>((void*)xa, n), xRows, new Span<float>((void*)ya, m), Rows, from, to);
            });
        }
    }

    /// <summary>Writes weight rows [<paramref name="from"/>, <paramref name="to"/>) as float32 in column order.</summary>
    public void Widen(int from, int to, Span<float> destination)
    {
        if (from < 0 || to > Rows || destination.Length < (long)(to - from) * Cols) throw new ArgumentOutOfRangeException(nameof(destination));
        for (var j = from; j < to; j++) WidenRow(j, destination.Slice((j - from) * Cols, Cols));
    }

    /// <summary>The whole matrix as float32 in column order, rows split over the cores.</summary>
    public void WidenAll(Span<float> destination)
    {
        if (destination.Length < (long)Rows * Cols) throw new ArgumentOutOfRangeException(nameof(destination));
        var items = Items();
        fixed (float* dp = destination)
        {
            nint da = (nint)dp;
            var length = destination.Length;
            KernelThreads.For(items, i =>
            {
                var (from, to) = Range(i, items);
                Widen(from, to, new Span<float>((void*)(da + (nint)from * Cols * sizeof(float)), (to - from) * Cols));
            });
        }
    }

    /// <summary>Work items for the whole matrix: four a core, none under <see cref="MinRowsPerItem"/> rows.</summary>
    private int Items() => Math.Max(1, Math.Min(4 * Environment.ProcessorCount, Rows / MinRowsPerItem));

    /// <summary>Item <paramref name="i"/>'s output rows, in multiples of 16 but for the last.</summary>
    private (int From, int To) Range(int i, int items)
    {
        var per = (Rows + items - 1) / items;
        per = (per + 15) & ~15;
        return (Math.Min(Rows, i * per), Math.Min(Rows, (i + 1) * per));
    }

    private void WidenRow(int j, Span<float> row)
    {
        if (_isBf16)
        {
            var stored = Bf16Values.Slice(j * Cols, Cols);
            var k = 0;
            if (_run == 32)
            {
                var high = Vector512.Create(unchecked((int)0xFFFF0000));
                var lanes = System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, int>(stored);
                for (; k < _whole; k += 32)
                {
                    var r = Vector512.Create<int>(lanes.Slice(k / 2, 16));
                    Vector512.ShiftLeft(r, 16).AsSingle().CopyTo(row.Slice(k, 16));
                    (r & high).AsSingle().CopyTo(row.Slice(k + 16, 16));
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var high = Vector256.Create(unchecked((int)0xFFFF0000));
                var lanes = System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, int>(stored);
                for (; k < _whole; k += 16)
                {
                    // The stored order pairs weights i and i + 8 of a run in one lane: low halves first, then high.
                    var r = Vector256.Create<int>(lanes.Slice(k / 2, 8));
                    Vector256.ShiftLeft(r, 16).AsSingle().CopyTo(row.Slice(k, 8));
                    (r & high).AsSingle().CopyTo(row.Slice(k + 8, 8));
                }
            }
            for (; k < Cols; k++) row[k] = this[j, k];
            return;
        }
        if (!_isFp8)
        {
            F32Values.Slice(j * Cols, Cols).CopyTo(row);
            return;
        }
        var codes = Fp8Codes.Slice(j * Cols, Cols);
        var scaleRow = j / Fp8Block * _scaleCols;
        var table = DTypes.Fp8E4M3Values;
        for (var k = 0; k < Cols; k++) row[k] = table[codes[k]] * _scales![scaleRow + k / Fp8Block];
    }
}
