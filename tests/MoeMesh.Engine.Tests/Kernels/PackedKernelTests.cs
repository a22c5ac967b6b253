using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Kernels;
using MoeMesh.Engine.Model;
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
    public void Multiply_EqualsLibTorchsLinear_OnTheWidenedWeights(int outputs, int inputs, int rows)
    {
        var random = new Random(outputs * 1000 + inputs * 10 + rows);
        var weights = Enumerable.Range(0, outputs * inputs).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var bf16 = weights.Select(w => (ushort)(BitConverter.SingleToInt32Bits(w) >>> 16)).ToArray();
        var widened = bf16.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray();
        var x = Enumerable.Range(0, rows * inputs).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        using var expected = nn.functional.linear(tensor(x, [rows, inputs]), tensor(widened, [outputs, inputs]));
        var reference = expected.data<float>().ToArray();

        foreach (var matrix in new[] { new PackedMatrix(outputs, inputs, bf16), new PackedMatrix(outputs, inputs, widened) })
        {
            var y = new float[rows * outputs];
            // In two ranges of outputs, as the parallel pass splits them.
            matrix.Multiply(x, rows, y, outputs, 0, outputs / 2);
            matrix.Multiply(x, rows, y, outputs, outputs / 2, outputs);
            for (var i = 0; i < y.Length; i++) Assert.True(Math.Abs(y[i] - reference[i]) <= 1e-4f * Math.Max(1, Math.Abs(reference[i])), $"{(matrix.IsBf16 ? "bf16" : "f32")} [{i}]: {y[i]} vs {reference[i]}");
        }
    }

    [Fact]
    public void ALayersExperts_InOnePass_EqualTheLibTorchPath_AndHoldHalfTheBytes()
    {
        var config = ModelConfig.Load(Path.Combine(TestModels.V3Dir, "config.json"));
        using var reader = new CheckpointReader(TestModels.V3Dir);
        var packed = new LocalExpertBackend(config, reader, ComputeOptions.Parse("cpu", "packed"), ExpertSet.Parse("all", config.NRoutedExperts));
        var libtorch = new LocalExpertBackend(config, reader, ComputeOptions.Cpu, ExpertSet.Parse("all", config.NRoutedExperts));
        // The checkpoint is BF16: two bytes a weight against the float32 copy's four.
        Assert.Equal(libtorch.ByteSize / 2, packed.ByteSize);

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
