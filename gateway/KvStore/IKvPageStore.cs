using MoeMesh.Engine.Kv;

namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// A KV page store shared by a deployment's gateways. A cache: it may be empty, slow or gone, and none of
/// its methods throws or waits past its budget because of that. Without one (--kv-store memory) each
/// gateway reuses only the pages it computed itself.
/// </summary>
public interface IKvPageStore
{
    /// <summary>
    /// The verified payloads of pages <paramref name="firstPage"/>.. of <paramref name="tokens"/> (at most
    /// <paramref name="count"/>), in order, up to the first page that is absent or fails a check; what was
    /// found within the lookup budget.
    /// </summary>
    Task<IReadOnlyList<ReadOnlyMemory<byte>>> LookupAsync(IReadOnlyList<int> tokens, int firstPage, int count);

    /// <summary>
    /// Copies a page the engine has just computed (on the caller's thread, before the page can be reused)
    /// and queues it to be written; drops it when the queue is full or the store is down.
    /// </summary>
    void Offer(CachedPage page, LatentKvCache cache);

    /// <summary>One line on the store's state for /readyz.</summary>
    string Describe();
}
