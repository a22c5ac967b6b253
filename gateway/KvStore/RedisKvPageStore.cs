using System.Collections.Concurrent;
using System.Diagnostics;
using MoeMesh.Engine.Kv;
using MoeMesh.Gateway.Metrics;
using StackExchange.Redis;

namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// Latent KV pages shared through Redis. A lookup pipelines a window of GETs per round trip, stops at the
/// first miss or bad page, and is abandoned at its budget; lookups of one page at the same time share one GET.
/// Pages that pass their checks get their TTL renewed, and so do the pages a gateway serves from its own cache
/// (at most every TTL/8 per page), so that the prefixes in use stay in Redis; a page that fails a check is
/// deleted, so that the next gateway to compute it writes it again. Writes go through
/// <see cref="RedisPageWriter"/>. While Redis is down, slow, full or empty, requests are computed locally.
/// </summary>
public sealed class RedisKvPageStore : IKvPageStore, IHostedService, IAsyncDisposable
{
    /// <summary>Most bytes of page values one lookup round trip asks for.</summary>
    private const int WindowBytes = 16 << 20;
    private const int MaxRenewalsTracked = 100_000;

    private readonly ConfigurationOptions _config;
    private readonly string _endpoint;
    private readonly KvPageLayout _layout;
    private readonly KvStoreSettings _settings;
    private readonly KvStoreMetrics _metrics;
    private readonly ILogger<RedisKvPageStore> _logger;
    private readonly RedisPageWriter _writer;
    private readonly int _window;
    private readonly long _renewEvery;
    private readonly ConcurrentDictionary<string, Task<byte[]?>> _fetching = new();
    private readonly ConcurrentDictionary<UInt128, long> _renewed = new();
    private volatile ConnectionMultiplexer? _redis;
    // 0 not yet known, 1 up, 2 down: the outage is logged once, when it starts.
    private int _state;

    public RedisKvPageStore(KvStoreSettings settings, KvPageLayout layout, KvStoreMetrics metrics, ILogger<RedisKvPageStore> logger)
    {
        _settings = settings;
        _config = RedisUrl.Parse(settings.Url);
        if (settings.Password is { } password) _config.Password = password;
        _endpoint = RedisUrl.Redacted(settings.Url);
        _layout = layout;
        _metrics = metrics;
        _logger = logger;
        _writer = new RedisPageWriter(settings, metrics, logger);
        _window = Math.Clamp(WindowBytes / KvPageFormat.ValueBytes(layout), 1, 64);
        _renewEvery = (long)(Math.Max(1, settings.Ttl.TotalSeconds / 8) * Stopwatch.Frequency);
    }

    /// <summary>
    /// Both connections up: lookups and writes. After an outage each reconnects on its own; counting the lookup one
    /// alone reported the store back while the writer still dropped every page as unavailable.
    /// </summary>
    public bool IsUp => _redis?.IsConnected == true && _writer.Redis?.IsConnected == true;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _writer.Start();
        // The first attempt gets its connect timeout, so that a gateway normally shares from its first request;
        // past it the gateway serves (computing locally) and the clients keep connecting in the background.
        var connecting = Task.WhenAll(ConnectReaderAsync(), ConnectWriterAsync());
        await Task.WhenAny(connecting, Task.Delay(_config.ConnectTimeout + 500, cancellationToken));
    }

    public async Task StopAsync(CancellationToken cancellationToken) => await _writer.DisposeAsync();

    public async ValueTask DisposeAsync()
    {
        await _writer.DisposeAsync();
        _redis?.Dispose();
    }

    private async Task ConnectReaderAsync()
    {
        // The lookup budget, not the client's command timeout, decides how long a lookup may take.
        var reader = _config.Clone();
        reader.AsyncTimeout = (int)Math.Min(int.MaxValue, Math.Max(_config.AsyncTimeout, _settings.LookupBudget.TotalMilliseconds + 1000));
        if (await ConnectAsync(reader) is not { } redis) return;
        redis.ConnectionFailed += (_, e) => NoteState(up: false, e.Exception?.Message ?? e.FailureType.ToString());
        redis.ConnectionRestored += (_, _) => NoteState(up: true, null);
        _redis = redis;
        NoteState(redis.IsConnected, redis.IsConnected ? null : "not reachable");
    }

    private async Task ConnectWriterAsync() => _writer.Redis = await ConnectAsync(_config);

    private async Task<ConnectionMultiplexer?> ConnectAsync(ConfigurationOptions config)
    {
        try
        {
            return await ConnectionMultiplexer.ConnectAsync(config);
        }
        catch (Exception e)
        {
            // Bad TLS or credentials settings: sharing stays off, serving goes on.
            _logger.LogError(e, "KV store {Endpoint}: cannot set up the connection; pages are not shared", _endpoint);
            return null;
        }
    }

    private void NoteState(bool up, string? why)
    {
        // moemesh_kv_store_up is read from IsUp at scrape time; this only logs the transitions.
        var before = Interlocked.Exchange(ref _state, up ? 1 : 2);
        if (up && before != 1) _logger.LogInformation("KV store {Endpoint} connected; KV pages are shared", _endpoint);
        if (!up && before != 2) _logger.LogWarning("KV store {Endpoint} unavailable ({Reason}); requests are computed locally until it returns", _endpoint, why);
    }

    public string Describe() =>
        IsUp ? $"kv store {_endpoint}: up" : $"kv store {_endpoint}: unavailable (pages are not shared; requests are computed locally)";

    public async Task<IReadOnlyList<ReadOnlyMemory<byte>>> LookupAsync(IReadOnlyList<int> tokens, int firstPage, int count)
    {
        if (count <= 0) return [];
        var found = new List<ReadOnlyMemory<byte>>();
        var result = await LookupCoreAsync(tokens, firstPage, count, found);
        _metrics.Lookups.WithLabels(result).Inc();
        _metrics.HitPages.Inc(found.Count);
        _metrics.HitTokens.Inc(found.Count * _layout.PageSize);
        _metrics.MissPages.Inc(count - found.Count);
        return found;
    }

    private async Task<string> LookupCoreAsync(IReadOnlyList<int> tokens, int firstPage, int count, List<ReadOnlyMemory<byte>> found)
    {
        if (_redis is not { IsConnected: true } redis) return "unavailable";
        var deadline = Stopwatch.GetTimestamp() + (long)(_settings.LookupBudget.TotalSeconds * Stopwatch.Frequency);
        var hashes = new UInt128[firstPage + count + 1];
        hashes[0] = PageHash.Root;
        for (var p = 0; p < firstPage + count; p++) hashes[p + 1] = PageHash.Of(hashes[p], tokens, p, _layout.PageSize);
        var db = redis.GetDatabase();
        // The pages this gateway serves from its own cache are in use: keep them in Redis too.
        for (var p = 0; p < firstPage; p++) Renew(db, hashes[p + 1]);
        try
        {
            while (found.Count < count)
            {
                var first = firstPage + found.Count;
                var n = Math.Min(_window, count - found.Count);
                var gets = new Task<byte[]?>[n];
                for (var i = 0; i < n; i++) gets[i] = Fetch(db, Key(hashes[first + i + 1]));
                var all = Task.WhenAll(gets);
                var remaining = TimeSpan.FromSeconds((double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
                byte[]?[] values;
                var started = Stopwatch.GetTimestamp();
                try
                {
                    if (remaining <= TimeSpan.Zero) throw new TimeoutException();
                    values = await all.WaitAsync(remaining);
                }
                catch (TimeoutException e) when (e is not RedisTimeoutException)
                {
                    Observe(all);
                    return "timeout";
                }
                _metrics.ReadSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
                for (var i = 0; i < n; i++)
                {
                    if (values[i] is not { } value) return found.Count == 0 ? "miss" : "partial";
                    var page = first + i;
                    var pageTokens = new int[_layout.PageSize];
                    for (var t = 0; t < pageTokens.Length; t++) pageTokens[t] = tokens[page * _layout.PageSize + t];
                    var (payload, rejection) = KvPageFormat.Decode(value, _layout, hashes[page], pageTokens);
                    if (rejection != KvPageRejection.None)
                    {
                        await RejectAsync(db, hashes[page + 1], rejection, deadline);
                        return "rejected";
                    }
                    Renew(db, hashes[page + 1]);
                    found.Add(payload);
                }
            }
            return "hit";
        }
        catch (Exception e)
        {
            // Whatever failed, the prompt is computed; a dropped connection is already logged as an outage.
            _metrics.Errors.WithLabels("lookup").Inc();
            if (e is RedisException or TimeoutException) _logger.LogDebug(e, "KV store lookup failed");
            else _logger.LogWarning(e, "KV store lookup failed");
            return "error";
        }
    }

    /// <summary>One GET per key at a time: lookups of the same page (a burst of one prompt) share it and its bytes.</summary>
    private Task<byte[]?> Fetch(IDatabase db, string key)
    {
        if (_fetching.TryGetValue(key, out var pending)) return pending;
        var fetch = GetAsync(db, key);
        if (_fetching.TryAdd(key, fetch))
            _ = fetch.ContinueWith(t => _fetching.TryRemove(new KeyValuePair<string, Task<byte[]?>>(key, t)), TaskScheduler.Default);
        return fetch;
    }

    private async Task<byte[]?> GetAsync(IDatabase db, string key)
    {
        var value = await db.StringGetAsync(key);
        if (value.IsNull) return null;
        var bytes = (byte[])value!;
        _metrics.ReadBytes.Inc(bytes.Length);
        return bytes;
    }

    /// <summary>Renews a page's TTL, at most every TTL/8, without waiting for the answer.</summary>
    private void Renew(IDatabase db, UInt128 pageHash)
    {
        var now = Stopwatch.GetTimestamp();
        if (_renewed.TryGetValue(pageHash, out var last) && now - last < _renewEvery) return;
        if (_renewed.Count >= MaxRenewalsTracked) _renewed.Clear();
        _renewed[pageHash] = now;
        db.KeyExpire(Key(pageHash), _settings.Ttl, CommandFlags.FireAndForget);
    }

    /// <summary>
    /// Counts and deletes a page that failed a check, so that the gateway computing it now can write it again
    /// (waited for within the lookup's budget: the write comes later, on the writer's connection).
    /// </summary>
    private async Task RejectAsync(IDatabase db, UInt128 pageHash, KvPageRejection rejection, long deadline)
    {
        var key = Key(pageHash);
        _metrics.RejectedPages.WithLabels(rejection.ToString().ToLowerInvariant()).Inc();
        _logger.LogWarning("KV store page {Key} rejected ({Reason}); it is deleted and computed instead", key, rejection);
        var delete = db.KeyDeleteAsync(key);
        try
        {
            await delete.WaitAsync(TimeSpan.FromSeconds(Math.Max(0, (double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency)));
        }
        catch (TimeoutException)
        {
            Observe(delete);
        }
    }

    public void Offer(CachedPage page, LatentKvCache cache)
    {
        if (_writer.Redis is not { IsConnected: true })
        {
            _metrics.WriteDroppedPages.WithLabels("unavailable").Inc();
            return;
        }
        var size = KvPageFormat.ValueBytes(_layout);
        if (!_writer.TryReserve(size)) return;
        try
        {
            var value = KvPageFormat.Prepare(_layout, page.ParentHash, page.Tokens);
            cache.ReadPage(page.Page, value.AsSpan(KvPageFormat.PayloadOffset(_layout), _layout.PayloadBytes));
            _writer.Enqueue(new RedisPageWriter.PageWrite(Key(page.Hash), value));
        }
        catch (Exception e)
        {
            _writer.Unreserve(size);
            _metrics.WriteDroppedPages.WithLabels("error").Inc();
            _logger.LogError(e, "Copying a KV page for the store failed; it is not shared");
        }
    }

    private string Key(UInt128 pageHash) => KvPageKey.Of(_settings.KeyPrefix, _layout.Fingerprint, pageHash);

    /// <summary>An abandoned operation still finishes (or fails) later; its outcome is read so that nothing goes unobserved.</summary>
    internal static void Observe(Task task) =>
        _ = task.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
}
