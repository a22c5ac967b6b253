namespace MoeMesh.Engine.Checkpoint;

/// <summary>A checkpoint that cannot be loaded: truncated file, missing tensor, wrong shape or dtype.</summary>
public sealed class CheckpointException(string message) : Exception(message);
