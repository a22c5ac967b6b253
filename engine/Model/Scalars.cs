using TorchSharp;

namespace MoeMesh.Engine.Model;

/// <summary>
/// Scalars passed to libtorch on the forward path, held for as long as their users live. A scalar converted
/// implicitly from a number (alpha = 1, x * 0.5, pow(2)) is a native object whose wrapper nothing references
/// once its handle is taken, so the collector may finalize it while libtorch still reads it: steps failed at
/// random under allocation pressure ("INTERNAL ASSERT FAILED at c10/core/Scalar.h"). TorchSharp's +
/// operator does the same with the alpha it passes (add(target, 1)): sums on the forward path go through
/// <see cref="Plus(torch.Tensor, torch.Tensor)"/>, whose alpha is rooted here (- passes none).
/// </summary>
internal static class Scalars
{
    // Scalars are not tracked by dispose scopes: a live reference alone keeps one alive.
    public static readonly Scalar One = 1.ToScalar();
    public static readonly Scalar Two = 2.ToScalar();
    public static readonly Scalar NegativeInfinity = float.NegativeInfinity.ToScalar();
    public static readonly Scalar Tiny = 1e-20.ToScalar();

    /// <summary>a + b, with a rooted alpha.</summary>
    public static torch.Tensor Plus(torch.Tensor a, torch.Tensor b) => a.add(b, One);

    /// <summary>a + b for a rooted scalar b, with a rooted alpha.</summary>
    public static torch.Tensor Plus(torch.Tensor a, Scalar b) => a.add(b, One);
}
