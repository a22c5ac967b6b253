using MoeMesh.Engine.Runtime;
using TorchSharp;

namespace MoeMesh.Gateway.KvStore;

/// <summary>Element type of stored cache values, as its code in the page header.</summary>
public enum KvDType : byte
{
    Float32 = 1,
    BFloat16 = 2,
    Float16 = 3,
}

/// <summary>
/// What a stored page must match to be used by this gateway: the model fingerprint (weights, compute dtype,
/// device kind, cache layout version and page size folded in) and the page's shape.
/// </summary>
public sealed record KvPageLayout(UInt128 Fingerprint, int PageSize, int Layers, int LatentDim, int RopeDim, KvDType DType)
{
    /// <summary>Version of the cache's byte layout (layer after layer, token after token, latent then rope key); part of the fingerprint.</summary>
    public const int CacheLayoutVersion = 1;

    public int ElementSize => DType == KvDType.Float32 ? 4 : 2;

    /// <summary>Latent and rope-key bytes of one page over all layers.</summary>
    public int PayloadBytes => checked(Layers * PageSize * (LatentDim + RopeDim) * ElementSize);

    /// <summary>The layout of the pages an engine computes from the checkpoint in <paramref name="checkpointDir"/>.</summary>
    public static KvPageLayout Of(LlmEngine engine, string checkpointDir)
    {
        var config = engine.Model.Config;
        var options = engine.Model.Options;
        var dtype = options.DType switch
        {
            torch.ScalarType.Float32 => KvDType.Float32,
            torch.ScalarType.BFloat16 => KvDType.BFloat16,
            torch.ScalarType.Float16 => KvDType.Float16,
            var other => throw new ArgumentOutOfRangeException(nameof(engine), $"no stored page format for {other}"),
        };
        var fingerprint = KvPageFingerprint.Compute(checkpointDir, dtype.ToString(), options.Device.type.ToString(), engine.Cache.PageSize);
        return new KvPageLayout(fingerprint, engine.Cache.PageSize, config.NumHiddenLayers, config.KvLoraRank, config.QkRopeHeadDim, dtype);
    }
}
