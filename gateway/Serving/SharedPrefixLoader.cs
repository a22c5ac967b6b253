using MoeMesh.Engine.Runtime;
using MoeMesh.Gateway.KvStore;
using MoeMesh.Gateway.Metrics;

namespace MoeMesh.Gateway.Serving;

/// <summary>
/// The engine loop's side of the shared KV store: finds a prompt's pages there (on a request thread, past the
/// pages cached here), imports them into the cache and offers it the pages each step computed (on the loop thread).
/// </summary>
internal sealed class SharedPrefixLoader(IKvPageStore store, LlmEngine engine, KvStoreMetrics? metrics, ILogger logger)
{
    /// <summary>The store's pages of the prompt past those cached here; null when there are none, or once <paramref name="stopping"/> fires.</summary>
    public async Task<ImportedPrefix?> FindAsync(IReadOnlyList<int> prompt, CancellationToken stopping)
    {
        try
        {
            var reusable = (prompt.Count - 1) / engine.Cache.PageSize;
            var local = engine.CachedPrefixPages(prompt);
            if (reusable > local && await store.LookupAsync(prompt, local, reusable - local).WaitAsync(stopping) is { Count: > 0 } pages)
                return new ImportedPrefix(local, pages);
        }
        catch (OperationCanceledException)
        {
            // Shutting down: computed without the store's pages.
        }
        catch (Exception e)
        {
            // The store never throws by contract; whatever went wrong, the prompt is computed.
            logger.LogError(e, "KV store lookup failed; the prompt is computed");
        }
        return null;
    }

    /// <summary>Copies found pages into the cache; a failure only means they are computed.</summary>
    public void Import(IReadOnlyList<int> prompt, ImportedPrefix found)
    {
        try
        {
            var cached = engine.ImportPages(prompt, found.FirstPage, found.Pages);
            metrics?.DiscardedPages.Inc(found.Pages.Count - cached);
        }
        catch (Exception e)
        {
            metrics?.Errors.WithLabels("import").Inc();
            logger.LogError(e, "Importing KV pages from the store failed; the prompt is computed");
        }
    }

    /// <summary>Offers the store the pages the last step computed; called before the next step, which may reuse them.</summary>
    public void OfferComputed()
    {
        foreach (var page in engine.TakeComputedPages()) store.Offer(page, engine.Cache);
    }
}
