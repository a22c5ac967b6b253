namespace MoeMesh.Engine.Text;

/// <summary>A chat template or conversation that cannot be rendered.</summary>
public sealed class ChatTemplateException(string message) : Exception(message);
