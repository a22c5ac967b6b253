using MoeMesh.Gateway.Hosting;
using MoeMesh.Gateway.KvStore;
using System.Net;

namespace MoeMesh.Gateway.Tests.KvStore;

/// <summary>--kv-store URLs, the other --kv-store-* options, and the model fingerprint in the key.</summary>
public sealed class KvStoreSettingsTests
{
    [Fact]
    public void RedisUrl_GivesEndpointCredentialsDatabaseAndTls()
    {
        var plain = RedisUrl.Parse("redis://cache.svc:6380/2");
        Assert.Equal("cache.svc:6380", plain.EndPoints.Single() is DnsEndPoint d ? $"{d.Host}:{d.Port}" : "");
        Assert.Equal(2, plain.DefaultDatabase);
        Assert.False(plain.Ssl);
        Assert.False(plain.AbortOnConnectFail);

        var secure = RedisUrl.Parse("rediss://moemesh:p%40ss@10.0.0.5:6379");
        Assert.True(secure.Ssl);
        Assert.Equal("moemesh", secure.User);
        Assert.Equal("p@ss", secure.Password);
        Assert.Equal(0, secure.DefaultDatabase);

        var passwordOnly = RedisUrl.Parse("redis://:secret@host");
        Assert.Null(passwordOnly.User);
        Assert.Equal("secret", passwordOnly.Password);
        Assert.Equal(6379, ((DnsEndPoint)passwordOnly.EndPoints.Single()).Port);

        Assert.Equal("rediss://10.0.0.5:6379/0", RedisUrl.Redacted("rediss://moemesh:p%40ss@10.0.0.5:6379"));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("http://host:6379")]
    [InlineData("redis://")]
    [InlineData("redis://host:6379/x")]
    [InlineData("redis://host:6379/-1")]
    [InlineData("redis://host:6379?ssl=true")]
    public void BadRedisUrl_IsRefused(string url) => Assert.Throws<FormatException>(() => RedisUrl.Parse(url));

    [Fact]
    public void Options_ReadFromTheCommandLineAndEnvironment()
    {
        var options = GatewayOptions.Parse(["--kv-store", "redis://r:7000", "--kv-store-prefix", "prod", "--kv-store-lookup-budget-ms", "80"],
            name => name switch { "MOEMESH_KV_STORE_TTL_SECONDS" => "600", "MOEMESH_KV_STORE_WRITE_QUEUE_BYTES" => "1000000", _ => null })!;
        Assert.Equal(new KvStoreSettings("redis://r:7000", "prod", TimeSpan.FromSeconds(600), TimeSpan.FromMilliseconds(80), 1_000_000), options.KvStoreSettings);
        Assert.Null(GatewayOptions.Parse([], _ => null)!.KvStoreSettings);
        var e = Assert.Throws<MoeMesh.Cli.CommandLineException>(() => GatewayOptions.Parse(["--kv-store", "redis://host:port"], _ => null));
        Assert.Contains("--kv-store", e.Message);
    }

    [Fact]
    public void Fingerprint_ChangesWithTheWeightsDtypeDeviceAndPageSize_NotWithTheFolder()
    {
        var copy = CopyOf(GatewayServer.ModelDir);
        try
        {
            var original = KvPageFingerprint.Compute(GatewayServer.ModelDir, "Float32", "CPU", 16);
            Assert.Equal(original, KvPageFingerprint.Compute(copy, "Float32", "CPU", 16));
            Assert.NotEqual(original, KvPageFingerprint.Compute(copy, "BFloat16", "CPU", 16));
            Assert.NotEqual(original, KvPageFingerprint.Compute(copy, "Float32", "CUDA", 16));
            Assert.NotEqual(original, KvPageFingerprint.Compute(copy, "Float32", "CPU", 64));
            // One weight byte near the end of a shard: the same shapes and config, other weights.
            var shard = Directory.GetFiles(copy, "*.safetensors").Order().First();
            var bytes = File.ReadAllBytes(shard);
            bytes[^5] ^= 1;
            File.WriteAllBytes(shard, bytes);
            Assert.NotEqual(original, KvPageFingerprint.Compute(copy, "Float32", "CPU", 16));
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }

    private static string CopyOf(string dir)
    {
        var copy = Path.Combine(Path.GetTempPath(), $"moemesh-fingerprint-{Guid.NewGuid():N}");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        return copy;
    }
}
