using System.Diagnostics;
using MoeMesh.Engine.Kernels;
using TorchSharp;
namespace MoeMesh.Bench;
/// <summary>
/// The packed kernel's rate against libtorch's float32 linear on the same (BF16-representable) weights, at the
/// shapes of the benchmark model's projections and LM head, for 1, 8 and 32 rows of x: on all cores (blocks of 64
/// outputs, as the expert pass splits them), on one thread, and libtorch; and the kernel on FP8 weights (random
/// codes and block scales) on all cores. Weights per second = rows x cols / time.
/// </summary>
public static class KernelRates
{
    public static void Run()
    {
        foreach (var (rows, cols) in new[] { (32000, 1024), (4096, 1024), (1024, 1024), (288, 1024) })
        foreach (var n in new[] { 1, 8, 32 })
        {
            var rnd = new Random(1);
            var bf = new ushort[rows * cols];
            for (var i = 0; i < bf.Length; i++) bf[i] = (ushort)(BitConverter.SingleToInt32Bits((float)(rnd.NextDouble() - 0.5)) >> 16);
            var m = new PackedMatrix(rows, cols, bf);
            // Random e4m3 codes, the two NaN codes left out, and random block scales.
            var codes = new byte[rows * cols];
            for (var i = 0; i < codes.Length; i++)
            {
                var c = rnd.Next(254);
                codes[i] = (byte)(c >= 0x7F ? c + 1 : c);
            }
            var scales = Enumerable.Range(0, (rows + 127) / 128 * ((cols + 127) / 128)).Select(_ => (float)rnd.NextDouble() / 448).ToArray();
            var m8 = new PackedMatrix(rows, cols, codes, scales);
            var x = new float[n * cols];
            for (var i = 0; i < x.Length; i++) x[i] = (float)rnd.NextDouble();
            var y = new float[n * rows];
            var w = torch.tensor(bf.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray(), new long[] { rows, cols });
            var xt = torch.tensor(x, new long[] { n, cols });
            int reps = Math.Max(5, (int)(2e9 / ((double)rows * cols * 4)));
            // Forty calls first: past tiered compilation's promotion to optimised code.
            double T(Action a) { for (var i = 0; i < 40; i++) a(); var sw = Stopwatch.StartNew(); for (var i = 0; i < reps; i++) a(); return sw.Elapsed.TotalSeconds / reps; }
            var blocks = (rows + 63) / 64;
            var par = T(() => Parallel.For(0, blocks, b => m.Multiply(x, n, y, rows, b * 64, Math.Min(rows, b * 64 + 64))));
            var one = T(() => m.Multiply(x, n, y, rows, 0, rows));
            var fp8 = T(() => Parallel.For(0, blocks, b => m8.Multiply(x, n, y, rows, b * 64, Math.Min(rows, b * 64 + 64))));
            var lt = T(() => torch.nn.functional.linear(xt, w).Dispose());
            Console.WriteLine($"{rows}x{cols} n={n}: kernel par {par * 1e6:F0} us ({(double)rows * cols / par / 1e9:F1} Gw/s), one thread {one * 1e6:F0} us ({(double)rows * cols / one / 1e9:F1} Gw/s), libtorch {lt * 1e6:F0} us ({(double)rows * cols / lt / 1e9:F1} Gw/s), " +
                $"FP8 kernel par {fp8 * 1e6:F0} us ({(double)rows * cols / fp8 / 1e9:F1} Gw/s)");
        }
    }
}
