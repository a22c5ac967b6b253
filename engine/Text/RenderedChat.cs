namespace MoeMesh.Engine.Text;

/// <summary>A conversation rendered by its chat template, with the spans of the text that are message content.</summary>
public sealed record RenderedChat(string Text, IReadOnlyList<(int Start, int Length)> Content);
