using System.Buffers.Binary;
using MoeMesh.Engine.Kv;
using MoeMesh.Gateway.KvStore;

namespace MoeMesh.Gateway.Tests.KvStore;

/// <summary>The stored page format: a round trip, and each check that turns a stored value into a miss.</summary>
public sealed class KvPageFormatTests
{
    private static readonly KvPageLayout Layout = new(Fingerprint: (UInt128)0x1234_5678_9abc_def0 << 32, PageSize: 4, Layers: 3, LatentDim: 8, RopeDim: 4, KvDType.Float32);
    private static readonly int[] Tokens = [11, 12, 13, 14];
    private static readonly UInt128 Parent = PageHash.Of(PageHash.Root, [1, 2, 3, 4], 0, 4);

    private static byte[] Payload() => Enumerable.Range(0, Layout.PayloadBytes).Select(i => (byte)(i * 7 + 3)).ToArray();

    private static byte[] Value() => KvPageFormat.Encode(Layout, Parent, Tokens, Payload());

    [Fact]
    public void EncodedPage_DecodesToItsPayload()
    {
        var value = Value();
        Assert.Equal(KvPageFormat.ValueBytes(Layout), value.Length);
        Assert.Equal(3 * 4 * 12 * 4, Layout.PayloadBytes);
        var (payload, rejection) = KvPageFormat.Decode(value, Layout, Parent, Tokens);
        Assert.Equal(KvPageRejection.None, rejection);
        Assert.Equal(Payload(), payload.ToArray());
    }

    public static TheoryData<string, KvPageRejection> Corruptions() => new()
    {
        { "truncated", KvPageRejection.Size },
        { "padded", KvPageRejection.Size },
        { "too short for a header", KvPageRejection.Size },
        { "magic", KvPageRejection.Magic },
        { "version", KvPageRejection.Version },
        { "fingerprint", KvPageRejection.Fingerprint },
        { "page size", KvPageRejection.Shape },
        { "layers", KvPageRejection.Shape },
        { "latent dim", KvPageRejection.Shape },
        { "rope dim", KvPageRejection.Shape },
        { "dtype", KvPageRejection.Shape },
        { "payload byte", KvPageRejection.Checksum },
        { "token byte without a new checksum", KvPageRejection.Checksum },
        { "checksum", KvPageRejection.Checksum },
        { "parent", KvPageRejection.Parent },
        { "tokens", KvPageRejection.Tokens },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void CorruptedPage_IsRejected_ForItsReason(string corruption, KvPageRejection expected)
    {
        var v = Value();
        var resealed = true;
        switch (corruption)
        {
            case "truncated": v = v[..^100]; resealed = false; break;
            case "padded": v = [.. v, 0]; resealed = false; break;
            case "too short for a header": v = v[..20]; resealed = false; break;
            case "magic": v[0] = (byte)'X'; break;
            case "version": v[4] = 9; break;
            case "fingerprint": v[8] ^= 1; break;
            case "page size": BinaryPrimitives.WriteInt32LittleEndian(v.AsSpan(24), 8); break;
            case "layers": v[28] = 2; break;
            case "latent dim": v[32] = 16; break;
            case "rope dim": v[36] = 2; break;
            case "dtype": v[6] = (byte)KvDType.BFloat16; break;
            case "payload byte": v[KvPageFormat.PayloadOffset(Layout) + 77] ^= 0x10; resealed = false; break;
            case "token byte without a new checksum": v[56] ^= 1; resealed = false; break;
            case "checksum": v[^1] ^= 1; resealed = false; break;
            case "parent": v[40] ^= 1; break;
            case "tokens": v[56] ^= 1; break;
        }
        // A consistent value (checksum recomputed) that is still wrong: only the field check can catch it.
        if (resealed) KvPageFormat.Seal(v);
        var (payload, rejection) = KvPageFormat.Decode(v, Layout, Parent, Tokens);
        Assert.Equal(expected, rejection);
        Assert.True(payload.IsEmpty);
    }

    [Fact]
    public void ValidPage_AskedForUnderAnotherPrefix_OrOtherTokens_IsRejected()
    {
        Assert.Equal(KvPageRejection.Parent, KvPageFormat.Decode(Value(), Layout, PageHash.Root, Tokens).Rejection);
        Assert.Equal(KvPageRejection.Tokens, KvPageFormat.Decode(Value(), Layout, Parent, [11, 12, 13, 15]).Rejection);
        Assert.Equal(KvPageRejection.Fingerprint, KvPageFormat.Decode(Value(), Layout with { Fingerprint = 7 }, Parent, Tokens).Rejection);
        Assert.Equal(KvPageRejection.Shape, KvPageFormat.Decode(Value(), Layout with { DType = KvDType.BFloat16 }, Parent, Tokens).Rejection);
    }

    [Fact]
    public void Key_CoversPrefixFingerprintAndTheWholeTokenPrefix()
    {
        int[] tokens = [1, 2, 3, 4, 5, 6, 7, 8];
        var page0 = PageHash.Of(PageHash.Root, tokens, 0, 4);
        var page1 = PageHash.Of(page0, tokens, 1, 4);
        Assert.Equal($"mm:kv1:{Layout.Fingerprint:x32}:{page1:x32}", KvPageKey.Of("mm", Layout.Fingerprint, page1));
        Assert.NotEqual(KvPageKey.Of("mm", Layout.Fingerprint, page1), KvPageKey.Of("other", Layout.Fingerprint, page1));
        Assert.NotEqual(KvPageKey.Of("mm", Layout.Fingerprint, page1), KvPageKey.Of("mm", Layout.Fingerprint + 1, page1));
        // The same four tokens after another first page, or at the start, hash differently.
        Assert.NotEqual(page1, PageHash.Of(PageHash.Of(PageHash.Root, [1, 2, 3, 9, 5, 6, 7, 8], 0, 4), tokens, 1, 4));
        Assert.NotEqual(page1, PageHash.Of(PageHash.Root, [5, 6, 7, 8], 0, 4));
        // Token ids are hashed as whole 32-bit values: 256 is not 0 followed by 1.
        Assert.NotEqual(PageHash.Of(PageHash.Root, [256, 0], 0, 2), PageHash.Of(PageHash.Root, [0, 1], 0, 2));
    }
}
