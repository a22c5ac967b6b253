namespace MoeMesh.Engine.Sampling;

/// <summary>A token's log-probability under the model and the most likely alternatives at its position.</summary>
public sealed record TokenLogprob(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> Top);
