using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// The identity of everything that changes cached latents: the checkpoint (config.json, and every
/// safetensors shard's name, length and bytes), the compute dtype, the device kind, the cache layout
/// version and the page size. Checkpoints up to <see cref="FullHashLimit"/> bytes are hashed whole; a
/// larger one (DeepSeek-V3 is ~700 GB) by each shard's header and <see cref="Samples"/> evenly spaced
/// samples of its data, so that a gateway starts in seconds: two checkpoints differing only outside the
/// samples would collide, so serve a changed checkpoint of that size under another --kv-store-prefix.
/// </summary>
public static class KvPageFingerprint
{
    public const long FullHashLimit = 4L << 30;
    public const int Samples = 64;
    private const int SampleBytes = 64 << 10;
    private const int HeaderPrefixBytes = 1 << 20;

    public static UInt128 Compute(string checkpointDir, string computeDType, string deviceKind, int pageSize)
    {
        var hash = new XxHash128();
        AddText(hash, $"moemesh-kv layout={KvPageLayout.CacheLayoutVersion} dtype={computeDType} device={deviceKind} page={pageSize}");
        hash.Append(File.ReadAllBytes(Path.Combine(checkpointDir, "config.json")));
        var shards = Directory.GetFiles(checkpointDir, "*.safetensors").Order(StringComparer.Ordinal).ToList();
        var whole = shards.Sum(f => new FileInfo(f).Length) <= FullHashLimit;
        foreach (var shard in shards)
        {
            using var file = File.OpenRead(shard);
            AddText(hash, $"{Path.GetFileName(shard)}:{file.Length}");
            if (whole) hash.Append(file);
            else AddSamples(hash, file);
        }
        return hash.GetCurrentHashAsUInt128();
    }

    private static void AddSamples(XxHash128 hash, FileStream file)
    {
        // The header (tensor names, dtypes, shapes, offsets) and samples spread over the data.
        var buffer = new byte[Math.Max(SampleBytes, HeaderPrefixBytes)];
        AddRange(hash, file, 0, HeaderPrefixBytes, buffer);
        for (var i = 0; i < Samples; i++) AddRange(hash, file, file.Length / Samples * i, SampleBytes, buffer);
    }

    private static void AddRange(XxHash128 hash, FileStream file, long offset, int length, byte[] buffer)
    {
        file.Position = offset;
        var want = (int)Math.Min(length, file.Length - offset);
        var read = file.ReadAtLeast(buffer.AsSpan(0, want), want, throwOnEndOfStream: false);
        Span<byte> at = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(at, offset);
        hash.Append(at);
        hash.Append(buffer.AsSpan(0, read));
    }

    private static void AddText(XxHash128 hash, string text) => hash.Append(Encoding.UTF8.GetBytes(text + "\n"));
}
