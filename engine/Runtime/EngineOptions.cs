namespace MoeMesh.Engine.Runtime;

/// <summary>Sizes of the engine's cache and batches.</summary>
public sealed record EngineOptions
{
    /// <summary>Bytes of device memory for the latent KV cache.</summary>
    public long KvCacheBytes { get; init; } = 256L << 20;

    /// <summary>Tokens per cache page.</summary>
    public int PageSize { get; init; } = 16;

    /// <summary>Most tokens computed in one step (decodes plus prefill chunks).</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Most sequences decoding at once.</summary>
    public int MaxRunningSequences { get; init; } = 64;

    /// <summary>
    /// 2 splits a step of several sequences into two micro-batches whose expert dispatches overlap the
    /// other's attention (worth it with remote experts); 1 runs the step as one batch.
    /// </summary>
    public int MicroBatches { get; init; } = 1;

    /// <summary>
    /// Fewest tokens each micro-batch must get for a step to be split: a smaller micro-batch touches nearly
    /// as many experts as the whole step, so splitting it would read the expert weights twice for little overlap.
    /// </summary>
    public int MicroBatchMinTokens { get; init; } = 64;

    /// <summary>
    /// Reuse the cached pages of a prompt prefix computed before (a shared system prompt, the earlier turns
    /// of a chat) instead of recomputing them; pages stay cached until the space is needed.
    /// </summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>Keep a list of the pages each step computes and publishes, for a shared store to copy (see <see cref="LlmEngine.TakeComputedPages"/>).</summary>
    public bool RecordComputedPages { get; init; }

    /// <summary>Upper bound on prompt plus output tokens; null for the model's and cache's limit.</summary>
    public int? MaxModelLength { get; init; }
}
