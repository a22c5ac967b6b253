namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// The store key of a page: the key prefix, the page format's version (a gateway never reads another format's
/// pages), the model fingerprint and the 128-bit chained hash of the prefix the page ends.
/// </summary>
public static class KvPageKey
{
    public static string Of(string prefix, UInt128 fingerprint, UInt128 pageHash) => $"{prefix}:kv{KvPageFormat.Version}:{fingerprint:x32}:{pageHash:x32}";
}
