using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Kernels;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Tests.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Tests.Kernels;

/// <summary>
/// The CPU kernels over weights kept in the checkpoint's type, against libtorch's float32 product of the same
/// weights widened (an independent implementation): equal to float rounding, at shapes with vector tails and row
/// counts that are not multiples of the kernel's four.
/// </summary>
public sealed class PackedKernelTests
{
    [Theory]
    [InlineData(37, 67, 1)]
    [InlineData(64, 128, 4)]
    [InlineData(33, 200, 9)]
    [InlineData(5, 7, 3)]
    [InlineData(130, 1027, 1)]
    [InlineData(9, 32, 1)]
    [InlineData(20, 48, 2)]
    [InlineData(19, 80, 6)]
    [InlineData(21, 72, 7)]
    [InlineData(11, 24, 3)]
    public void Multiply_EqualsLibTorchsLinear_OnTheWidenedWeights(int outputs, int inputs, int rows)
    {
        var random = new Random(outputs * 1000 + inputs * 10 + rows);
        var weights = Enumerable.Range(0, outputs * inputs).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var bf16 = weights.Select(w => (ushort)(BitConverter.SingleToInt32Bits(w) >>> 16)).ToArray();
        var widened = bf16.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray();
        var x = Enumerable.Range(0, rows * inputs).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var expected = nn.functional.linear(tensor(x, [rows, inputs]), tensor(widened, [outputs, inputs]));
        var reference = expected.data<float>().ToArray();

        foreach (var matrix in Bf16Layouts(outputs, inputs, bf16).Append(new PackedMatrix(outputs, inputs, widened)).Append(new PackedMatrix(outputs, inputs, widened) { Portable = true }))
        {
            var y = new float[rows * outputs];
            // In two ranges of outputs, as the parallel pass splits them.
            matrix.Multiply(x, rows, y, outputs, 0, outputs / 2);
            matrix.Multiply(x, rows, y, outputs, outputs / 2, outputs);
            for (var i = 0; i < y.Length; i++) Assert.True(Math.Abs(y[i] - reference[i]) <= 1e-4f * Math.Max(1, Math.Abs(reference[i])), $"{(matrix.IsBf16 ? "bf16" : "f32")} [{i}]: {y[i]} vs {reference[i]}");
            matrix.Dispose();
        }
    }

    /// <summary>
    /// FP8 weights with 128x128 block scales (partial blocks at the edges when a side is not a multiple of 128),
    /// against libtorch's product of the weights dequantised by the format's definition.
    /// </summary>
    [Theory]
    [InlineData(37, 67, 1)]
    [InlineData(130, 300, 1)]
    [InlineData(129, 257, 4)]
    [InlineData(200, 1027, 6)]
    [InlineData(40, 176, 3)]
    [InlineData(5, 7, 3)]
    public void Multiply_Fp8_EqualsLibTorchsLinear_OnTheDequantisedWeights(int outputs, int inputs, int rows)
    {
        var random = new Random(outputs * 1000 + inputs * 10 + rows);
        // Magnitudes over three decades (codes with exponent 0 among them), and blocks of clearly different scales.
        var weights = Enumerable.Range(0, outputs * inputs)
            .Select(i => (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.Next(-3, 1)) * Math.Pow(2, (i / inputs / 128 + i % inputs / 128) % 4 * 3))).ToArray();
        var (codes, scales) = Fp8Quantiser.Quantise(weights, outputs, inputs);
        var dequantised = codes.Select((c, i) => DeepSeekModelTests.DecodeE4M3(c) * scales.Values[i / inputs / 128 * scales.Cols + i % inputs / 128]).ToArray();
        var x = Enumerable.Range(0, rows * inputs).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var expected = nn.functional.linear(tensor(x, [rows, inputs]), tensor(dequantised, [outputs, inputs]));
        var reference = expected.data<float>().ToArray();
        var scale = reference.Max(Math.Abs);

        // The kernels, and the portable path.
        foreach (var portable in new[] { false, true })
        {
            using var matrix = new PackedMatrix(outputs, inputs, codes, scales.Values) { Portable = portable };
            Assert.True(matrix.IsFp8);
            Assert.Equal(outputs * inputs + scales.Values.Length * 4, matrix.ByteSize);
            var y = new float[rows * outputs];
            matrix.Multiply(x, rows, y, outputs, 0, outputs / 2);
            matrix.Multiply(x, rows, y, outputs, outputs / 2, outputs);
            for (var i = 0; i < y.Length; i++) Assert.True(Math.Abs(y[i] - reference[i]) <= 1e-5f * scale, $"portable {portable} [{i}]: {y[i]} vs {reference[i]}");
            // The element accessor reads the dequantised weight.
            for (var i = 0; i < dequantised.Length; i += 97) Assert.Equal(dequantised[i], matrix[i / inputs, i % inputs]);
        }
    }

    /// <summary>
    /// Every finite e4m3 code, bit for bit: one weight row of all 256 codes (the two NaN codes as zero) in two blocks
    /// of power-of-two scales, against one-hot rows of x, one and four rows at a time: each output is one code's value
    /// times its block's scale, exactly.
    /// </summary>
    [Fact]
    public void Multiply_Fp8_ReadsEveryCodeExactly()
    {
        var codes = Enumerable.Range(0, 256).Select(c => (byte)(c is 0x7F or 0xFF ? 0 : c)).ToArray();
        float[] scales = [0.25f, 8f];
        var matrix = new PackedMatrix(1, 256, codes, scales);
        foreach (var rows in new[] { 1, 4 })
            for (var k = 0; k + rows <= 256; k += rows)
            {
                var x = new float[rows * 256];
                for (var r = 0; r < rows; r++) x[r * 256 + k + r] = 1;
                var y = new float[rows];
                matrix.Multiply(x, rows, y, 1, 0, 1);
                for (var r = 0; r < rows; r++)
                    Assert.Equal(DeepSeekModelTests.DecodeE4M3(codes[k + r]) * scales[(k + r) / 128], y[r]);
            }
    }

    /// <summary>
    /// BF16 weights in each row layout this CPU can run (runs of 16 for AVX2, and of 32 where AVX-512 runs), and on
    /// the portable path (the machine's layout, no AVX2 kernels).
    /// </summary>
    private static IEnumerable<PackedMatrix> Bf16Layouts(int outputs, int inputs, ushort[] bf16)
    {
        yield return new PackedMatrix(outputs, inputs, bf16, wide: false);
        if (PackedMatrix.WideByDefault) yield return new PackedMatrix(outputs, inputs, bf16, wide: true);
        yield return new PackedMatrix(outputs, inputs, bf16) { Portable = true };
    }

    /// <summary>
    /// The whole-matrix paths a <see cref="Projection"/> takes: widening back to float32 in column order gives every
    /// weight exactly (BF16 by its bits, FP8 by the format's definition times its block's scale), and the product over
    /// all cores equals the single-threaded one bit for bit. 1027 columns leave a tail past the last run of 16.
    /// </summary>
    [Theory]
    [InlineData(300, 1027, 1)]
    [InlineData(37, 64, 5)]
    [InlineData(1000, 48, 3)]
    public void WidenAll_GivesEveryWeight_AndMultiplyAll_EqualsOneThread(int outputs, int inputs, int rows)
    {
        var random = new Random(outputs + inputs + rows);
        var bf16 = Enumerable.Range(0, outputs * inputs).Select(_ => (ushort)(BitConverter.SingleToInt32Bits((float)(random.NextDouble() * 2 - 1)) >>> 16)).ToArray();
        var codes = Enumerable.Range(0, outputs * inputs).Select(_ => (byte)random.Next(256)).Select(c => c is 0x7F or 0xFF ? (byte)0 : c).ToArray();
        var scaleCols = (inputs + 127) / 128;
        var scales = Enumerable.Range(0, (outputs + 127) / 128 * scaleCols).Select(i => MathF.Pow(2, i % 5 - 2)).ToArray();
        var x = Enumerable.Range(0, rows * inputs).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var f = new PackedMatrix(outputs, inputs, codes, scales);
        Func<int, float> bf16Weight = i => BitConverter.Int32BitsToSingle(bf16[i] << 16);
        foreach (var (matrix, weight) in Bf16Layouts(outputs, inputs, bf16).Select(b => (b, bf16Weight))
            .Append((f, i => DeepSeekModelTests.DecodeE4M3(codes[i]) * scales[i / inputs / 128 * scaleCols + i % inputs / 128])))
        {
            var widened = new float[outputs * inputs];
            matrix.WidenAll(widened);
            for (var i = 0; i < widened.Length; i++) Assert.True(widened[i] == weight(i), $"weight {i}: {widened[i]} vs {weight(i)}");

            var all = new float[rows * outputs];
            var one = new float[rows * outputs];
            matrix.MultiplyAll(x, rows, all);
            matrix.Multiply(x, rows, one, outputs, 0, outputs);
            Assert.Equal(one, all);
        }
    }

    [Theory]
    [InlineData("bf16")]
    [InlineData("fp8")]
    public void ALayersExperts_InOnePass_EqualTheLibTorchPath_AndHoldTheCheckpointsBytes(string format)
    {
        var dir = format == "bf16" ? TestModels.V3Dir : TestModels.Fp8Dir;
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var reader = new CheckpointReader(dir);
        var packed = new LocalExpertBackend(config, reader, ComputeOptions.Parse("cpu", "packed"), ExpertSet.Parse("all", config.NRoutedExperts));
        var libtorch = new LocalExpertBackend(config, reader, ComputeOptions.Cpu, ExpertSet.Parse("all", config.NRoutedExperts));
        // BF16: two bytes a weight against the float32 copy's four. FP8: one byte a weight plus a float32 scale per
        // 128x128 block (a tiny expert's matrices are one block each).
        var matrices = 3L * config.NRoutedExperts * (config.NumHiddenLayers - config.FirstKDenseReplace);
        Assert.Equal(format == "bf16" ? libtorch.ByteSize / 2 : libtorch.ByteSize / 4 + matrices * 4, packed.ByteSize);

        var layer = config.FirstKDenseReplace;
        manual_seed(11);
        foreach (var tokens in new[] { 1, 3, 13 })
        {
            using var scope = NewDisposeScope();
            var hidden = randn(tokens, config.HiddenSize);
            var ids = stack(Enumerable.Range(0, tokens).Select(_ => randperm(config.NRoutedExperts).narrow(0, 0, config.NumExpertsPerTok)).ToArray());
            var weights = rand(tokens, config.NumExpertsPerTok);
            var expected = libtorch.Compute(layer, hidden, ids, weights).data<float>().ToArray();
            var actual = packed.Compute(layer, hidden, ids, weights).data<float>().ToArray();
            Assert.Equal(expected.Length, actual.Length);
            for (var i = 0; i < actual.Length; i++)
                Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-4f * Math.Max(1, Math.Abs(expected[i])), $"{tokens} tokens [{i}]: {actual[i]} vs {expected[i]}");
        }
    }
}
