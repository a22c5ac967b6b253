using static TorchSharp.torch;

namespace MoeMesh.Engine.Experts;

/// <summary>
/// The seam between the model and its routed experts: in-process (<see cref="LocalExpertBackend"/>)
/// or on remote expert nodes. A call is started, the caller does other work (the shared experts),
/// then completes it.
/// </summary>
public interface IExpertBackend
{
    /// <summary>
    /// Starts computing, for each of the N tokens of <paramref name="hidden"/> [N, D], the sum over its
    /// chosen experts <paramref name="expertIds"/> [N, k] of weight [N, k] times the expert's output.
    /// The three tensors stay alive until the call is completed.
    /// </summary>
    IExpertCall Begin(int layer, Tensor hidden, Tensor expertIds, Tensor weights);
}

/// <summary>An expert computation in flight.</summary>
public interface IExpertCall
{
    /// <summary>Waits for and returns the combined routed output [N, D].</summary>
    Tensor Complete();
}
