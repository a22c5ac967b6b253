namespace MoeMesh.Gateway.KvStore;

/// <summary>The store key of a page: the key prefix, the model fingerprint and the 128-bit chained hash of the prefix the page ends.</summary>
public static class KvPageKey
{
    public static string Of(string prefix, UInt128 fingerprint, UInt128 pageHash) => $"{prefix}:kv1:{fingerprint:x32}:{pageHash:x32}";
}
