using MoeMesh.Engine.Checkpoint;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)). As libtorch tensors gate and up are fused into one matmul;
/// held packed (<see cref="ComputeOptions.HoldsDensePacked"/>) they are two <see cref="Projection"/>s, each as stored.
/// </summary>
public sealed class SwiGluMlp : IDisposable
{
    private readonly Tensor? _gateUp;
    private readonly Projection? _gate;
    private readonly Projection? _up;
    private readonly Projection _down;

    public int IntermediateSize { get; }

    public SwiGluMlp(CheckpointReader r, string prefix, ComputeOptions o, int hidden, int intermediate)
    {
        IntermediateSize = intermediate;
        if (o.HoldsDensePacked)
        {
            _gate = Projection.Load(r, $"{prefix}.gate_proj.weight", o, intermediate, hidden);
            _up = Projection.Load(r, $"{prefix}.up_proj.weight", o, intermediate, hidden);
        }
        else
        {
            using var gate = Weights.Load(r, $"{prefix}.gate_proj.weight", o, intermediate, hidden);
            using var up = Weights.Load(r, $"{prefix}.up_proj.weight", o, intermediate, hidden);
            _gateUp = cat(new[] { gate, up }, 0);
        }
        _down = Projection.Load(r, $"{prefix}.down_proj.weight", o, hidden, intermediate);
    }

    /// <summary>Bytes this MLP's weights occupy.</summary>
    public long ByteSize => Weights.Bytes(_gateUp) + (_gate?.ByteSize ?? 0) + (_up?.ByteSize ?? 0) + _down.ByteSize;

    public void Dispose()
    {
        _gateUp?.Dispose();
        _gate?.Dispose();
        _up?.Dispose();
        _down.Dispose();
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor g, u;
        if (_gateUp is not null)
        {
            var gu = Weights.Linear(x, _gateUp);
            g = gu.narrow(-1, 0, IntermediateSize);
            u = gu.narrow(-1, IntermediateSize, IntermediateSize);
        }
        else
        {
            g = _gate!.Forward(x);
            u = _up!.Forward(x);
        }
        return _down.Forward(nn.functional.silu(g) * u).MoveToOuterDisposeScope();
    }
}
