using System.Runtime.InteropServices;
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

    /// <summary>Element type of the cached values.</summary>
    public ScalarType DType { get; }

    /// <summary>Bytes of one page over all layers: layer after layer, token after token, each token's latent then its rope key.</summary>
    public int PageBytes => checked((int)(BytesPerToken * PageSize));

    public LatentKvCache(ModelConfig c, ComputeOptions o, long byteBudget, int pageSize)
    {
        PageSize = pageSize;
        DType = o.DType;
        BytesPerToken = (long)c.NumHiddenLayers * c.LatentCacheDim * ElementSize(o.DType);
        PageCount = (int)Math.Min(int.MaxValue, byteBudget / (BytesPerToken * pageSize));
        if (PageCount < 1)
            throw new ArgumentException($"KV cache budget of {byteBudget} bytes holds no page of {pageSize} tokens ({BytesPerToken} bytes per token)");
        _layers = Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => zeros((long)PageCount * pageSize, c.LatentCacheDim, o.DType, o.Device))
            .ToArray();
    }

    public Tensor Layer(int layer) => _layers[layer];

    /// <summary>Copies page <paramref name="page"/> of every layer into <paramref name="destination"/> (<see cref="PageBytes"/> long).</summary>
    public void ReadPage(int page, Span<byte> destination)
    {
        using var scope = NewDisposeScope();
        var layerBytes = PageBytes / _layers.Length;
        for (var l = 0; l < _layers.Length; l++)
        {
            // A fresh host copy: its bytes start at offset 0 whatever the device and the view.
            var host = _layers[l].narrow(0, (long)page * PageSize, PageSize).to(CPU).clone();
            host.bytes.CopyTo(destination.Slice(l * layerBytes, layerBytes));
        }
    }

    /// <summary>Overwrites page <paramref name="page"/> of every layer with <paramref name="source"/>, laid out as <see cref="ReadPage"/> writes it.</summary>
    public void WritePage(int page, ReadOnlySpan<byte> source)
    {
        if (source.Length != PageBytes) throw new ArgumentException($"a page is {PageBytes} bytes, got {source.Length}", nameof(source));
        using var scope = NewDisposeScope();
        var layerBytes = PageBytes / _layers.Length;
        for (var l = 0; l < _layers.Length; l++)
        {
            var host = empty(PageSize, _layers[l].shape[1], DType);
            var layerSource = source.Slice(l * layerBytes, layerBytes);
            // The setter only reads the span it is given; it takes a writable one.
            host.bytes = MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(layerSource), layerSource.Length);
            _layers[l].narrow(0, (long)page * PageSize, PageSize).copy_(host);
        }
    }

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
