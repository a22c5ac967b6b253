namespace MoeMesh.Testing;

/// <summary>
/// Float comparisons with an absolute tolerance. xUnit's precision overload rounds both values first, so
/// two values a hair apart fail when they straddle a rounding boundary; this never does.
/// </summary>
public static class Close
{
    public static void Equal(double expected, double actual, double tolerance, string? what = null)
    {
        if (double.IsNaN(actual) || Math.Abs(expected - actual) > tolerance)
            Assert.Fail($"{what ?? "value"}: expected {expected:R} within {tolerance:R}, got {actual:R} (|diff| {Math.Abs(expected - actual):R})");
    }
}
