using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>Routed experts (through the expert backend) plus the always-on shared experts.</summary>
public sealed class MoeLayer
{
    private readonly int _layer;
    private readonly MoeGate _gate;
    private readonly SwiGluMlp? _shared;
    private readonly IExpertBackend _experts;

    public MoeLayer(ModelConfig c, CheckpointReader r, string prefix, ComputeOptions o, int layer, IExpertBackend experts)
    {
        _layer = layer;
        _experts = experts;
        _gate = new MoeGate(c, r, $"{prefix}.gate", o.Device);
        if (c.NSharedExperts > 0)
            _shared = new SwiGluMlp(r, $"{prefix}.shared_experts", o, c.HiddenSize, c.MoeIntermediateSize * c.NSharedExperts);
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (ids, weights) = _gate.Route(x);
        var call = _experts.Begin(_layer, x, ids, weights);
        // The shared experts run while a remote dispatch is in flight.
        var shared = _shared?.Forward(x);
        var routed = call.Complete();
        var y = shared is null ? routed : routed + shared;
        return y.MoveToOuterDisposeScope();
    }
}
