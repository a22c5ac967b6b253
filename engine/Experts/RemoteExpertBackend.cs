using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Experts;

/// <summary>
/// Routed experts on expert nodes: each MoE layer sends one message per node holding a chosen expert
/// and sums the replies. A node that fails is retried on another replica of the same experts.
/// </summary>
public sealed class RemoteExpertBackend(IExpertRouter router, ComputeOptions options, ExpertLoad? load = null) : IExpertBackend
{
    private long _waitTicks;

    /// <summary>Time the model spent blocked on replies: the dispatch latency that overlap did not hide.</summary>
    public TimeSpan WaitTime => TimeSpan.FromTicks(Interlocked.Read(ref _waitTicks));

    public IExpertCall Begin(int layer, Tensor hidden, Tensor expertIds, Tensor weights) =>
        RemoteExpertCall.Start(router, options, layer, hidden, expertIds, weights, AddWait, load);

    private void AddWait(TimeSpan waited) => Interlocked.Add(ref _waitTicks, waited.Ticks);
}
