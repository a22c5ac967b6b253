using System.Buffers.Binary;
using System.IO.Hashing;

namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// The bytes of one page in the shared store, little-endian: magic "MMKV", format version (u16), dtype (u8),
/// a zero byte, the model fingerprint (16), page size, layer count, latent and rope dims (u32 each), the
/// parent page's hash (16), the page's token ids (i32 each), the latent and rope-key bytes of every layer,
/// and an XxHash64 of everything before it. <see cref="Decode"/> checks every one of these.
/// </summary>
public static class KvPageFormat
{
    public const ushort Version = 1;
    private static ReadOnlySpan<byte> Magic => "MMKV"u8;
    private const int HeaderBytes = 56;
    private const int ChecksumBytes = 8;

    /// <summary>Length of a page's value under <paramref name="layout"/>.</summary>
    public static int ValueBytes(KvPageLayout layout) => HeaderBytes + 4 * layout.PageSize + layout.PayloadBytes + ChecksumBytes;

    /// <summary>Where the payload starts in a value (so that it can be filled in place, see <see cref="Seal"/>).</summary>
    public static int PayloadOffset(KvPageLayout layout) => HeaderBytes + 4 * layout.PageSize;

    /// <summary>
    /// A value with its header and tokens written and room for the payload at <see cref="PayloadOffset"/>;
    /// <see cref="Seal"/> writes the checksum once the payload is in.
    /// </summary>
    public static byte[] Prepare(KvPageLayout layout, UInt128 parentHash, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length != layout.PageSize) throw new ArgumentException($"a page holds {layout.PageSize} tokens, got {tokens.Length}", nameof(tokens));
        var value = new byte[ValueBytes(layout)];
        var span = value.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], Version);
        span[6] = (byte)layout.DType;
        BinaryPrimitives.WriteUInt128LittleEndian(span[8..], layout.Fingerprint);
        BinaryPrimitives.WriteInt32LittleEndian(span[24..], layout.PageSize);
        BinaryPrimitives.WriteInt32LittleEndian(span[28..], layout.Layers);
        BinaryPrimitives.WriteInt32LittleEndian(span[32..], layout.LatentDim);
        BinaryPrimitives.WriteInt32LittleEndian(span[36..], layout.RopeDim);
        BinaryPrimitives.WriteUInt128LittleEndian(span[40..], parentHash);
        for (var i = 0; i < tokens.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(span[(HeaderBytes + 4 * i)..], tokens[i]);
        return value;
    }

    /// <summary>Writes the checksum of a prepared value whose payload is in place.</summary>
    public static void Seal(byte[] value) =>
        BinaryPrimitives.WriteUInt64LittleEndian(value.AsSpan(value.Length - ChecksumBytes), XxHash64.HashToUInt64(value.AsSpan(0, value.Length - ChecksumBytes)));

    /// <summary>A whole value: header, tokens, payload and checksum.</summary>
    public static byte[] Encode(KvPageLayout layout, UInt128 parentHash, ReadOnlySpan<int> tokens, ReadOnlySpan<byte> payload)
    {
        if (payload.Length != layout.PayloadBytes) throw new ArgumentException($"a page's payload is {layout.PayloadBytes} bytes, got {payload.Length}", nameof(payload));
        var value = Prepare(layout, parentHash, tokens);
        payload.CopyTo(value.AsSpan(PayloadOffset(layout)));
        Seal(value);
        return value;
    }

    /// <summary>
    /// Checks a stored value against what the caller expects under its key: the layout, the parent hash and
    /// the page's tokens. Returns the payload, or the first check that failed.
    /// </summary>
    public static (ReadOnlyMemory<byte> Payload, KvPageRejection Rejection) Decode(byte[] value, KvPageLayout layout, UInt128 parentHash, ReadOnlySpan<int> tokens)
    {
        var span = value.AsSpan();
        if (span.Length < HeaderBytes + ChecksumBytes) return (default, KvPageRejection.Size);
        if (!span[..4].SequenceEqual(Magic)) return (default, KvPageRejection.Magic);
        if (BinaryPrimitives.ReadUInt16LittleEndian(span[4..]) != Version) return (default, KvPageRejection.Version);
        if (BinaryPrimitives.ReadUInt128LittleEndian(span[8..]) != layout.Fingerprint) return (default, KvPageRejection.Fingerprint);
        if (span[6] != (byte)layout.DType
            || BinaryPrimitives.ReadInt32LittleEndian(span[24..]) != layout.PageSize
            || BinaryPrimitives.ReadInt32LittleEndian(span[28..]) != layout.Layers
            || BinaryPrimitives.ReadInt32LittleEndian(span[32..]) != layout.LatentDim
            || BinaryPrimitives.ReadInt32LittleEndian(span[36..]) != layout.RopeDim)
            return (default, KvPageRejection.Shape);
        if (span.Length != ValueBytes(layout)) return (default, KvPageRejection.Size);
        var body = span[..^ChecksumBytes];
        if (BinaryPrimitives.ReadUInt64LittleEndian(span[^ChecksumBytes..]) != XxHash64.HashToUInt64(body)) return (default, KvPageRejection.Checksum);
        if (BinaryPrimitives.ReadUInt128LittleEndian(span[40..]) != parentHash) return (default, KvPageRejection.Parent);
        for (var i = 0; i < layout.PageSize; i++)
            if (BinaryPrimitives.ReadInt32LittleEndian(span[(HeaderBytes + 4 * i)..]) != tokens[i]) return (default, KvPageRejection.Tokens);
        return (value.AsMemory(PayloadOffset(layout), layout.PayloadBytes), KvPageRejection.None);
    }
}
