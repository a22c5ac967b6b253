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
    private readonly StepProfile? _profile;

    /// <summary>A routed-expert call in flight and the tensors it needs until it completes.</summary>
    public sealed record Step(Tensor X, Tensor Ids, Tensor Weights, IExpertCall Call);

    public MoeLayer(ModelConfig c, CheckpointReader r, string prefix, ComputeOptions o, int layer, IExpertBackend experts)
    {
        _layer = layer;
        _experts = experts;
        _profile = o.Profile;
        _gate = new MoeGate(c, r, $"{prefix}.gate", o.Device);
        if (c.NSharedExperts > 0)
            _shared = new SwiGluMlp(r, $"{prefix}.shared_experts", o, c.HiddenSize, c.MoeIntermediateSize * c.NSharedExperts);
    }

    /// <summary>Bytes of the router's and the shared experts' weights held (the routed experts are the backend's).</summary>
    public long ByteSize => _gate.ByteSize + (_shared?.ByteSize ?? 0);

    /// <summary>Routes the tokens and starts the routed experts; the caller keeps the step's tensors alive.</summary>
    public Step Begin(Tensor x)
    {
        var (ids, weights) = _gate.Route(x);
        return new Step(x, ids, weights, _experts.Begin(_layer, x, ids, weights));
    }

    /// <summary>Runs the shared experts (while a remote dispatch is in flight), then adds the routed output.</summary>
    public Tensor Finish(Step step)
    {
        using var scope = NewDisposeScope();
        Tensor? shared;
        using (_profile?.Time(StepPart.SharedExperts))
            shared = _shared?.Forward(step.X);
        Tensor routed;
        using (_profile?.Time(StepPart.RoutedExperts))
            routed = step.Call.Complete();
        var y = shared is null ? routed : Scalars.Plus(routed, shared);
        return y.MoveToOuterDisposeScope();
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return Finish(Begin(x)).MoveToOuterDisposeScope();
    }
}
