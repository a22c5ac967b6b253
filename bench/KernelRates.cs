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

    /// <summary>
    /// Prefill-sized products (64 to 512 rows of x) at the benchmark model's projection shapes: the packed BF16 kernel
    /// across the cores (<see cref="PackedMatrix.MultiplyAll"/>) against libtorch's float32 linear on a copy widened
    /// for the call (as a projection's prefill path does) and on a float32 weight held; multiply-adds per second.
    /// </summary>
    public static void Prefill()
    {
        foreach (var (rows, cols) in new[] { (1024, 1024), (4096, 1024), (1536, 384), (1024, 2816), (256, 1024) })
        foreach (var n in new[] { 64, 128, 512 })
        {
            var rnd = new Random(1);
            var bf = new ushort[rows * cols];
            for (var i = 0; i < bf.Length; i++) bf[i] = (ushort)(BitConverter.SingleToInt32Bits((float)(rnd.NextDouble() - 0.5)) >> 16);
            using var m = new PackedMatrix(rows, cols, bf);
            var x = new float[n * cols];
            for (var i = 0; i < x.Length; i++) x[i] = (float)rnd.NextDouble();
            var y = new float[n * rows];
            using var w = torch.tensor(bf.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray(), new long[] { rows, cols });
            using var xt = torch.tensor(x, new long[] { n, cols });
            var reps = Math.Max(5, (int)(4e9 / ((double)n * rows * cols)));
            double T(Action a) { for (var i = 0; i < 10; i++) a(); var sw = Stopwatch.StartNew(); for (var i = 0; i < reps; i++) a(); return sw.Elapsed.TotalSeconds / reps; }
            var kernel = T(() => m.MultiplyAll(x, n, y));
            var widened = T(() =>
            {
                using var wt = torch.empty(rows, cols);
                m.WidenAll(HostMemory.Span(wt));
                torch.nn.functional.linear(xt, wt).Dispose();
            });
            var held = T(() => torch.nn.functional.linear(xt, w).Dispose());
            double Rate(double t) => (double)n * rows * cols / t / 1e9;
            Console.WriteLine($"{rows}x{cols} n={n}: kernel {kernel * 1e6:F0} us ({Rate(kernel):F1} GFMA/s), libtorch widened {widened * 1e6:F0} us ({Rate(widened):F1}), libtorch held {held * 1e6:F0} us ({Rate(held):F1})");
        }
    }

    /// <summary>
    /// The BF16 kernel's multiply-add rate on a cache-resident 256 x 1024 matrix for 1 to 8 rows of x, on one thread
    /// and on two threads with a matrix each; then the routed-expert pass alone at the benchmark model's layer shape
    /// (64 experts of 256 x 1024, top 6) for 1, 8 and 32 tokens, over seven layers in turn so that its weights come
    /// from memory as in a step, with the bytes per second of the active experts' BF16 weights.
    /// </summary>
    /// <summary>
    /// Read bandwidth of 1 GiB of weights on 4 KiB pages (a managed array) and on 2 MiB pages (WeightMemory), one
    /// thread streaming the whole and two threads taking 128 KiB pieces in turn (as the expert pass does), best of 5.
    /// </summary>
    private static unsafe void PageSizes()
    {
        const int bytes = 1 << 30;
        var managed = new byte[bytes];
        using var huge = WeightMemory.Allocate(bytes);
        Array.Fill(managed, (byte)1);
        huge.Span<byte>(bytes).Fill(1);
        static float Sum(byte* p, long from, long to)
        {
            var (a, b) = (System.Runtime.Intrinsics.Vector256<float>.Zero, System.Runtime.Intrinsics.Vector256<float>.Zero);
            for (var i = from; i < to; i += 64)
            {
                a += System.Runtime.Intrinsics.Vector256.Load((float*)(p + i));
                b += System.Runtime.Intrinsics.Vector256.Load((float*)(p + i + 32));
            }
            return System.Runtime.Intrinsics.Vector256.Sum(a + b);
        }
        double Rate(byte* p, bool pieces)
        {
            var best = double.MaxValue;
            for (var rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                if (pieces) Parallel.For(0, bytes >> 17, k => Sum(p, (long)k << 17, ((long)k + 1) << 17));
                else Sum(p, 0, bytes);
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return bytes / best / 1e9;
        }
        fixed (byte* m = managed)
            Console.WriteLine($"read 1 GiB: 4 KiB pages {Rate(m, false):F1} GB/s one thread, {Rate(m, true):F1} GB/s in 128 KiB pieces on all cores; " +
                $"2 MiB pages {Rate((byte*)huge.Address, false):F1} and {Rate((byte*)huge.Address, true):F1}");
    }

    /// <summary>The decode attention kernel at the benchmark model's shape: one sequence over 2,000 and 16,000 cached tokens, 8 at 2,000.</summary>
    private static void DecodeAttention()
    {
        var shape = new LatentDecodeAttention.Shape(Heads: 16, Nope: 64, Rope: 32, Value: 64, Latent: 256, Scale: 0.1f);
        var rnd = new Random(3);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(rnd.NextDouble() - 0.5)).ToArray();
        var kvB = Values(shape.Heads * (shape.Nope + shape.Value) * shape.Latent);
        foreach (var (sequences, context) in new[] { (1, 2000), (1, 16000), (8, 2000), (1, 2000) })
        {
            var cache = Values(sequences * context * shape.Row);
            var slots = Enumerable.Range(0, sequences * context).Select(i => (long)i).ToArray();
            var lengths = Enumerable.Repeat((long)context, sequences).ToArray();
            var (qNope, qPe) = (Values(sequences * shape.Heads * shape.Nope), Values(sequences * shape.Heads * shape.Rope));
            var output = new float[sequences * shape.Heads * shape.Value];
            void Once() => LatentDecodeAttention.Run(shape, sequences, qNope, qPe, cache, slots, context, lengths, kvB, output);
            for (var i = 0; i < 5; i++) Once();
            var best = double.MaxValue;
            for (var i = 0; i < 20; i++)
            {
                var sw = Stopwatch.StartNew();
                Once();
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
            }
            Console.WriteLine($"decode attention, {sequences} sequence(s) over {context} cached tokens: {best:F2} ms a layer (best of 20)");
        }
    }

    public static void ExpertPass()
    {
        const int experts = 64, inter = 256, h = 1024, topK = 6, layerCount = 7;
        var rnd = new Random(2);
        ushort[] Weights(int n) => Enumerable.Range(0, n).Select(_ => (ushort)(BitConverter.SingleToInt32Bits((float)(rnd.NextDouble() - 0.5)) >> 16)).ToArray();
        PackedExpert Expert() => new(new PackedMatrix(inter, h, Weights(inter * h)), new PackedMatrix(inter, h, Weights(inter * h)), new PackedMatrix(h, inter, Weights(inter * h)));
        PageSizes();
        DecodeAttention();
        var layers = Enumerable.Range(0, layerCount).Select(_ => Enumerable.Range(0, experts).Select(_ => Expert()).ToArray()).ToArray();
        foreach (var n in new[] { 1, 2, 3, 4, 8 })
        {
            var x = new float[n * h];
            var (y0, y1) = (new float[n * inter], new float[n * inter]);
            var (m0, m1) = (layers[0][0].Gate, layers[0][1].Gate);
            const int reps = 2000;
            for (var i = 0; i < 200; i++) m0.Multiply(x, n, y0, inter, 0, inter);
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < reps; i++) m0.Multiply(x, n, y0, inter, 0, inter);
            var one = sw.Elapsed.TotalSeconds / reps;
            sw.Restart();
            Parallel.Invoke(
                () => { for (var i = 0; i < reps; i++) m0.Multiply(x, n, y0, inter, 0, inter); },
                () => { for (var i = 0; i < reps; i++) m1.Multiply(x, n, y1, inter, 0, inter); });
            var two = sw.Elapsed.TotalSeconds / reps;
            Console.WriteLine($"256x1024 in cache, {n} rows: one thread {256.0 * 1024 * n / one / 1e9:F1} G multiply-adds/s, two threads {2 * 256.0 * 1024 * n / two / 1e9:F1}");
        }
        foreach (var tokens in new[] { 1, 8, 32, 512 })
        {
            var hidden = Enumerable.Range(0, tokens * h).Select(_ => (float)rnd.NextDouble()).ToArray();
            var pairs = Enumerable.Range(0, tokens).SelectMany(t => Enumerable.Range(0, experts).OrderBy(_ => rnd.Next()).Take(topK).Select(e => (Token: (long)t, Expert: (long)e))).ToArray();
            var (pt, pe, pw) = (pairs.Select(p => p.Token).ToArray(), pairs.Select(p => p.Expert).ToArray(), pairs.Select(_ => 0.1f).ToArray());
            var bytes = pe.Distinct().Count() * 3L * inter * h * 2;
            var reps = (tokens > 32 ? 3 : 30) * layerCount;
            var result = new float[tokens * h];
            for (var i = 0; i < reps / 5; i++) PackedExpertPass.Run(hidden, tokens, h, pt, pe, pw, e => layers[i % layerCount][e], result);
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < reps; i++) PackedExpertPass.Run(hidden, tokens, h, pt, pe, pw, e => layers[i % layerCount][e], result);
            var s = sw.Elapsed.TotalSeconds / reps;
            Console.WriteLine($"expert pass, {tokens} tokens, {pe.Distinct().Count()} experts active: {s * 1e3:F2} ms a layer, {bytes / s / 1e9:F1} GB/s of BF16 weights, {pairs.Length * 3.0 * inter * h / s / 1e9:F1} G multiply-adds/s");
        }
    }
}
