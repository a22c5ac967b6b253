namespace MoeMesh.Engine.Scheduling;

/// <summary>Where a sequence is in its life.</summary>
public enum SequenceStatus
{
    Waiting,
    Running,
    Finished,
}
