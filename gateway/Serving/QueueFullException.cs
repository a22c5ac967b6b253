namespace MoeMesh.Gateway.Serving;

/// <summary>More sequences are waiting than --max-queue allows.</summary>
public sealed class QueueFullException() : Exception("the server is at capacity; retry later");
