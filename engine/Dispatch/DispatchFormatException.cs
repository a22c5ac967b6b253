namespace MoeMesh.Engine.Dispatch;

/// <summary>A dispatch message that does not follow the wire format.</summary>
public sealed class DispatchFormatException(string message) : Exception(message);
