namespace MoeMesh.Engine.Kv;

/// <summary>A whole page published in the cache: where it is, the prefix hash it ends, its parent's, and its own tokens.</summary>
public sealed record CachedPage(int Page, UInt128 Hash, UInt128 ParentHash, int[] Tokens);
