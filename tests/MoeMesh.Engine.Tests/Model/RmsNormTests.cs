using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Tests.Model;

public sealed class RmsNormTests
{
    /// <summary>
    /// A decode step's few rows are normalised in the engine's loops, a prefill chunk's in libtorch's ops: the same
    /// rows both ways agree to float rounding, and both with the definition in float64.
    /// </summary>
    [Fact]
    public void FewRows_NormaliseInLoopsAsLibtorchDoes()
    {
        using var scope = NewDisposeScope();
        const int width = 96;
        var generator = new TorchSharp.torch.Generator(5);
        var weight = rand(width, generator: generator) + 0.5;
        var norm = new RmsNorm(weight, 1e-6);
        var x = randn(RmsNorm.LoopRows + 8, width, generator: generator) * 3;

        var all = norm.Forward(x).data<float>().ToArray();
        var few = norm.Forward(x.narrow(0, 5, 3)).data<float>().ToArray();

        var xs = x.data<float>().ToArray();
        var w = weight.data<float>().ToArray();
        for (var r = 5; r < 8; r++)
        {
            var row = xs.AsSpan(r * width, width).ToArray();
            var scale = 1 / Math.Sqrt(row.Sum(v => (double)v * v) / width + 1e-6);
            for (var c = 0; c < width; c++)
            {
                var expected = row[c] * scale * w[c];
                var i = r * width + c;
                Assert.True(Math.Abs(all[i] - expected) < 1e-5, $"libtorch row {r} column {c}: {all[i]} vs {expected}");
                Assert.True(Math.Abs(few[i - 5 * width] - expected) < 1e-5, $"loop row {r} column {c}: {few[i - 5 * width]} vs {expected}");
            }
        }
    }
}
