using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace MoeMesh.Engine.Dispatch;

/// <summary>
/// The binary dispatch message, little-endian: a 40-byte header (magic "MMD1", 16-character model
/// fingerprint, layer, token count, hidden size, pair count, dtype), then the pairs' token indices
/// (int32), expert indices (int32) and weights (float32), then the hidden states [tokens, hidden].
/// The reply is the combined output [tokens, hidden] in the same dtype, with no header.
/// </summary>
public static class DispatchCodec
{
    public const string ContentType = "application/x-moemesh-dispatch";
    public const int FingerprintLength = 16;
    private const uint Magic = 0x31444D4D; // "MMD1"
    private const int HeaderSize = 40;

    /// <summary>
    /// The largest message a gateway can send for <paramref name="tokens"/> tokens: the header, at most
    /// <paramref name="expertsPerToken"/> (token, expert, weight) pairs per token, and the hidden states in float32.
    /// </summary>
    public static long MaxMessageBytes(int tokens, int expertsPerToken, int hidden) =>
        HeaderSize + (long)tokens * (12L * expertsPerToken + 4L * hidden);

    public static byte[] Encode(DispatchRequest r)
    {
        if (r.Fingerprint.Length != FingerprintLength) throw new ArgumentException($"the fingerprint must be {FingerprintLength} characters");
        var statesBytes = (long)r.TokenCount * r.Hidden * DispatchRequest.ElementSize(r.DType);
        if (r.States.Length != statesBytes) throw new ArgumentException($"states hold {r.States.Length} bytes, expected {statesBytes}");
        var buffer = new byte[HeaderSize + 12L * r.PairCount + statesBytes];
        var span = buffer.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        Encoding.ASCII.GetBytes(r.Fingerprint, span.Slice(4, FingerprintLength));
        BinaryPrimitives.WriteInt32LittleEndian(span[20..], r.Layer);
        BinaryPrimitives.WriteInt32LittleEndian(span[24..], r.TokenCount);
        BinaryPrimitives.WriteInt32LittleEndian(span[28..], r.Hidden);
        BinaryPrimitives.WriteInt32LittleEndian(span[32..], r.PairCount);
        span[36] = (byte)r.DType;
        var at = HeaderSize;
        at += Write(span[at..], r.PairTokens);
        at += Write(span[at..], r.PairExperts);
        at += Write(span[at..], r.PairWeights);
        r.States.Span.CopyTo(span[at..]);
        return buffer;
    }

    /// <summary>Parses and checks a message; throws <see cref="DispatchFormatException"/> naming what is wrong.</summary>
    public static DispatchRequest Decode(ReadOnlyMemory<byte> message)
    {
        var span = message.Span;
        if (span.Length < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(span) != Magic)
            throw new DispatchFormatException("not a dispatch message (bad magic or shorter than the header)");
        var fingerprint = Encoding.ASCII.GetString(span.Slice(4, FingerprintLength));
        var layer = BinaryPrimitives.ReadInt32LittleEndian(span[20..]);
        var tokens = BinaryPrimitives.ReadInt32LittleEndian(span[24..]);
        var hidden = BinaryPrimitives.ReadInt32LittleEndian(span[28..]);
        var pairs = BinaryPrimitives.ReadInt32LittleEndian(span[32..]);
        var dtype = (WireDType)span[36];
        if (!Enum.IsDefined(dtype)) throw new DispatchFormatException($"unknown dtype {span[36]}");
        if (tokens <= 0 || hidden <= 0 || pairs < tokens)
            throw new DispatchFormatException($"bad sizes: {tokens} tokens, hidden {hidden}, {pairs} pairs");
        var expected = HeaderSize + 12L * pairs + (long)tokens * hidden * DispatchRequest.ElementSize(dtype);
        if (span.Length != expected) throw new DispatchFormatException($"message is {span.Length} bytes, its header implies {expected}");
        var at = HeaderSize;
        var pairTokens = MemoryMarshal.Cast<byte, int>(span.Slice(at, 4 * pairs)).ToArray();
        at += 4 * pairs;
        var pairExperts = MemoryMarshal.Cast<byte, int>(span.Slice(at, 4 * pairs)).ToArray();
        at += 4 * pairs;
        var pairWeights = MemoryMarshal.Cast<byte, float>(span.Slice(at, 4 * pairs)).ToArray();
        at += 4 * pairs;
        var seen = new bool[tokens];
        for (var i = 0; i < pairs; i++)
        {
            if ((uint)pairTokens[i] >= (uint)tokens) throw new DispatchFormatException($"pair {i} names token {pairTokens[i]} of {tokens}");
            if (!float.IsFinite(pairWeights[i])) throw new DispatchFormatException($"pair {i} has a non-finite weight");
            seen[pairTokens[i]] = true;
        }
        if (Array.IndexOf(seen, false) is var missing and >= 0) throw new DispatchFormatException($"token {missing} has no expert");
        return new DispatchRequest(fingerprint, layer, tokens, hidden, dtype, pairTokens, pairExperts, pairWeights, message[at..]);
    }

    private static int Write<T>(Span<byte> destination, T[] values) where T : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(values.AsSpan());
        bytes.CopyTo(destination);
        return bytes.Length;
    }
}
