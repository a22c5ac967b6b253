using MoeMesh.Engine.Config;
using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Kv;

/// <summary>
/// The paged latent KV cache: per layer, a [pages x page_size, kv_lora_rank + qk_rope_head_dim] tensor
/// holding each token's normalised latent and rotated rope key (576 values for DeepSeek-V3).
/// </summary>
public sealed class LatentKvCache : IDisposable
{
    private readonly Tensor[] _layers;

    public int PageCount { get; }
    public int PageSize { get; }
    public long BytesPerToken { get; }
    public long TotalBytes => BytesPerToken * PageCount * PageSize;

    public LatentKvCache(ModelConfig c, ComputeOptions o, long byteBudget, int pageSize)
    {
        PageSize = pageSize;
        BytesPerToken = (long)c.NumHiddenLayers * c.LatentCacheDim * ElementSize(o.DType);
        PageCount = (int)Math.Min(int.MaxValue, byteBudget / (BytesPerToken * pageSize));
        if (PageCount < 1)
            throw new ArgumentException($"KV cache budget of {byteBudget} bytes holds no page of {pageSize} tokens ({BytesPerToken} bytes per token)");
        _layers = Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => zeros((long)PageCount * pageSize, c.LatentCacheDim, o.DType, o.Device))
            .ToArray();
    }

    public Tensor Layer(int layer) => _layers[layer];

    /// <summary>Frees the cache's memory now rather than when the collector gets to it (it is the largest allocation of a gateway).</summary>
    public void Dispose()
    {
        foreach (var t in _layers) t.Dispose();
    }

    private static int ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
