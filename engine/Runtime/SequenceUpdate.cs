using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Runtime;

/// <summary>What one step did to one sequence: a new token (with its text and logprobs) and/or its end.</summary>
public sealed record SequenceUpdate(Sequence Sequence, int? TokenId, TokenLogprob? Logprob, string TextDelta, bool Finished);
