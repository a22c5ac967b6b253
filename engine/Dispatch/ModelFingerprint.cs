using System.Security.Cryptography;

namespace MoeMesh.Engine.Dispatch;

/// <summary>
/// Identifies a checkpoint on the dispatch wire: the first 16 hex digits of the SHA-256 of its
/// config.json. A gateway and an expert node agree only if they serve the same model.
/// </summary>
public static class ModelFingerprint
{
    public static string Of(string modelDir) =>
        Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(modelDir, "config.json"))))[..DispatchCodec.FingerprintLength];
}
