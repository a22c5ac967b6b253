namespace MoeMesh.Gateway.Serving;

/// <summary>Verified page payloads of a prompt from the shared store, starting at page <paramref name="FirstPage"/>.</summary>
internal sealed record ImportedPrefix(int FirstPage, IReadOnlyList<ReadOnlyMemory<byte>> Pages);
