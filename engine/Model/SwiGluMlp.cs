using MoeMesh.Engine.Checkpoint;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) * up(x)), with gate and up fused into one matmul.</summary>
public sealed class SwiGluMlp : IDisposable
{
    private readonly Tensor _gateUp;
    private readonly Tensor _down;

    public int IntermediateSize { get; }

    public SwiGluMlp(CheckpointReader r, string prefix, ComputeOptions o, int hidden, int intermediate)
    {
        IntermediateSize = intermediate;
        using var gate = Weights.Load(r, $"{prefix}.gate_proj.weight", o, intermediate, hidden);
        using var up = Weights.Load(r, $"{prefix}.up_proj.weight", o, intermediate, hidden);
        _gateUp = cat(new[] { gate, up }, 0);
        _down = Weights.Load(r, $"{prefix}.down_proj.weight", o, hidden, intermediate);
    }

    /// <summary>Bytes this MLP's weights occupy.</summary>
    public long ByteSize => (_gateUp.NumberOfElements + _down.NumberOfElements) * _down.ElementSize;

    public void Dispose()
    {
        _gateUp.Dispose();
        _down.Dispose();
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var gu = Weights.Linear(x, _gateUp);
        var g = gu.narrow(-1, 0, IntermediateSize);
        var u = gu.narrow(-1, IntermediateSize, IntermediateSize);
        return Weights.Linear(nn.functional.silu(g) * u, _down).MoveToOuterDisposeScope();
    }
}
