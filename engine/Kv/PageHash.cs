using System.Buffers.Binary;
using System.IO.Hashing;

namespace MoeMesh.Engine.Kv;

/// <summary>
/// The 128-bit chained hash of a token prefix, page by page: a page's hash covers its parent's hash and its
/// own token ids, so equal hashes mean equal prefixes up to that page (128 bits: safe as a key shared by a
/// cluster's gateways for months, where a 64-bit hash is not).
/// </summary>
public static class PageHash
{
    /// <summary>Hash of the empty prefix: the parent of the first page.</summary>
    public static readonly UInt128 Root = UInt128.Zero;

    /// <summary>The hash of the page holding tokens [page x pageSize, (page + 1) x pageSize), chained on its parent's.</summary>
    public static UInt128 Of(UInt128 parent, IReadOnlyList<int> tokens, int page, int pageSize)
    {
        Span<byte> buffer = stackalloc byte[16 + 4 * pageSize];
        BinaryPrimitives.WriteUInt128LittleEndian(buffer, parent);
        // Little-endian on every machine: gateways on different hardware agree on the key.
        for (var i = 0; i < pageSize; i++) BinaryPrimitives.WriteInt32LittleEndian(buffer[(16 + 4 * i)..], tokens[page * pageSize + i]);
        return XxHash128.HashToUInt128(buffer);
    }
}
