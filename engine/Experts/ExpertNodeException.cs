namespace MoeMesh.Engine.Experts;

/// <summary>A dispatch to one expert node failed: unreachable, past its deadline, or refused.</summary>
public sealed class ExpertNodeException(string node, string message, Exception? inner = null)
    : Exception($"expert node {node}: {message}", inner)
{
    public string Node { get; } = node;
}
