using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Gateway.Serving;

/// <summary>One update of a generation: a token with its text, and/or the end.</summary>
public sealed record GenerationEvent(int? TokenId, TokenLogprob? Logprob, string TextDelta, FinishReason? Finish, string? Error);
