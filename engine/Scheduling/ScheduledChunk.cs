namespace MoeMesh.Engine.Scheduling;

/// <summary>Tokens [Start, Start+Length) of a sequence to compute this step.</summary>
public sealed record ScheduledChunk(Sequence Sequence, int Start, int Length)
{
    /// <summary>The chunk reaches the sequence's last token, so its last row is sampled.</summary>
    public bool Samples => Start + Length == Sequence.Length;
}
