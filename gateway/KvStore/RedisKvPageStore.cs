using System.Diagnostics;
using System.Threading.Channels;
using MoeMesh.Engine.Kv;
using MoeMesh.Gateway.Metrics;
using StackExchange.Redis;

namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// Latent KV pages shared through Redis. Lookups pipeline a window of GETEX (refreshing the TTL of what is
/// used) per round trip and stop at the first miss or bad page; a lookup is abandoned at its budget. Writes
/// go through a queue bounded in bytes to one writer task (SET NX with the TTL), never on the engine loop
/// beyond copying the page. While Redis is down, slow, full or empty, requests are computed locally.
/// </summary>
public sealed class RedisKvPageStore : IKvPageStore, IHostedService, IDisposable
{
    /// <summary>Most bytes of page values one lookup round trip asks for.</summary>
    private const int WindowBytes = 16 << 20;
    private const int MaxWritesPerRoundTrip = 32;
    private static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(5);

    private readonly ConfigurationOptions _config;
    private readonly string _endpoint;
    private readonly KvPageLayout _layout;
    private readonly KvStoreSettings _settings;
    private readonly KvStoreMetrics _metrics;
    private readonly ILogger<RedisKvPageStore> _logger;
    private readonly Channel<PageWrite> _writes = Channel.CreateUnbounded<PageWrite>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stopping = new();
    private readonly int _window;
    private volatile ConnectionMultiplexer? _redis;
    private Task _writer = Task.CompletedTask;
    private long _queuedBytes;
    // 0 not yet known, 1 up, 2 down: the outage is logged once, when it starts.
    private int _state;

    private sealed record PageWrite(string Key, byte[] Value);

    public RedisKvPageStore(KvStoreSettings settings, KvPageLayout layout, KvStoreMetrics metrics, ILogger<RedisKvPageStore> logger)
    {
        _settings = settings;
        _config = RedisUrl.Parse(settings.Url);
        _endpoint = RedisUrl.Redacted(settings.Url);
        _layout = layout;
        _metrics = metrics;
        _logger = logger;
        _window = Math.Clamp(WindowBytes / KvPageFormat.ValueBytes(layout), 1, 64);
    }

    /// <summary>Bytes of one page's value in the store.</summary>
    public int PageValueBytes => KvPageFormat.ValueBytes(_layout);

    public bool IsUp => _redis?.IsConnected == true;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _writer = Task.Run(WriteLoopAsync, CancellationToken.None);
        // The first attempt gets its connect timeout, so that a gateway normally shares from its first request;
        // past it the gateway serves (computing locally) and the client keeps connecting in the background.
        var connecting = ConnectAsync();
        await Task.WhenAny(connecting, Task.Delay(_config.ConnectTimeout + 500, cancellationToken));
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _writes.Writer.TryComplete();
        _stopping.Cancel();
        await _writer.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _redis?.Dispose();
    }

    private async Task ConnectAsync()
    {
        try
        {
            var redis = await ConnectionMultiplexer.ConnectAsync(_config);
            redis.ConnectionFailed += (_, e) => NoteState(up: false, e.Exception?.Message ?? e.FailureType.ToString());
            redis.ConnectionRestored += (_, _) => NoteState(up: true, null);
            _redis = redis;
            NoteState(redis.IsConnected, redis.IsConnected ? null : "not reachable");
        }
        catch (Exception e)
        {
            // Bad TLS or credentials settings: sharing stays off, serving goes on.
            _logger.LogError(e, "KV store {Endpoint}: cannot set up the connection; pages are not shared", _endpoint);
        }
    }

    private void NoteState(bool up, string? why)
    {
        _metrics.Up.Set(up ? 1 : 0);
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
        try
        {
            while (found.Count < count)
            {
                var first = firstPage + found.Count;
                var n = Math.Min(_window, count - found.Count);
                var gets = new Task<RedisValue>[n];
                for (var i = 0; i < n; i++) gets[i] = db.StringGetSetExpiryAsync(Key(hashes[first + i + 1]), _settings.Ttl);
                var remaining = TimeSpan.FromSeconds((double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
                RedisValue[] values;
                var started = Stopwatch.GetTimestamp();
                try
                {
                    if (remaining <= TimeSpan.Zero) throw new TimeoutException();
                    values = await Task.WhenAll(gets).WaitAsync(remaining);
                }
                catch (TimeoutException e) when (e is not RedisTimeoutException)
                {
                    Observe(gets);
                    return "timeout";
                }
                _metrics.ReadSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
                for (var i = 0; i < n; i++)
                {
                    if (values[i].IsNull) return found.Count == 0 ? "miss" : "partial";
                    var value = (byte[])values[i]!;
                    _metrics.ReadBytes.Inc(value.Length);
                    var page = first + i;
                    var pageTokens = new int[_layout.PageSize];
                    for (var t = 0; t < pageTokens.Length; t++) pageTokens[t] = tokens[page * _layout.PageSize + t];
                    var (payload, rejection) = KvPageFormat.Decode(value, _layout, hashes[page], pageTokens);
                    if (rejection != KvPageRejection.None)
                    {
                        _metrics.RejectedPages.WithLabels(rejection.ToString().ToLowerInvariant()).Inc();
                        _logger.LogWarning("KV store page {Key} rejected ({Reason}); it is computed instead", Key(hashes[page + 1]), rejection);
                        return "rejected";
                    }
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

    public void Offer(CachedPage page, LatentKvCache cache)
    {
        if (!IsUp)
        {
            _metrics.WriteDroppedPages.WithLabels("unavailable").Inc();
            return;
        }
        var size = PageValueBytes;
        if (Interlocked.Add(ref _queuedBytes, size) > _settings.WriteQueueBytes)
        {
            Interlocked.Add(ref _queuedBytes, -size);
            _metrics.WriteDroppedPages.WithLabels("queue_full").Inc();
            return;
        }
        try
        {
            var value = KvPageFormat.Prepare(_layout, page.ParentHash, page.Tokens);
            cache.ReadPage(page.Page, value.AsSpan(KvPageFormat.PayloadOffset(_layout), _layout.PayloadBytes));
            _writes.Writer.TryWrite(new PageWrite(Key(page.Hash), value));
            _metrics.WriteQueuePages.Inc();
        }
        catch (Exception e)
        {
            Interlocked.Add(ref _queuedBytes, -size);
            _metrics.WriteDroppedPages.WithLabels("error").Inc();
            _logger.LogError(e, "Copying a KV page for the store failed; it is not shared");
        }
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<PageWrite>();
        try
        {
            while (await _writes.Reader.WaitToReadAsync(_stopping.Token))
            {
                while (batch.Count < MaxWritesPerRoundTrip && _writes.Reader.TryRead(out var write)) batch.Add(write);
                try
                {
                    await WriteAsync(batch);
                }
                finally
                {
                    Interlocked.Add(ref _queuedBytes, -batch.Sum(w => (long)w.Value.Length));
                    _metrics.WriteQueuePages.Dec(batch.Count);
                    batch.Clear();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping: what is still queued is a cache's content, not worth delaying shutdown for.
        }
    }

    private async Task WriteAsync(List<PageWrite> batch)
    {
        if (_redis is not { IsConnected: true } redis)
        {
            _metrics.WriteDroppedPages.WithLabels("unavailable").Inc(batch.Count);
            return;
        }
        var db = redis.GetDatabase();
        var sets = new Task<bool>[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            KvPageFormat.Seal(batch[i].Value);
            // NX: a page another gateway wrote first is not overwritten (it holds the same values).
            sets[i] = db.StringSetAsync(batch[i].Key, batch[i].Value, _settings.Ttl, When.NotExists);
        }
        var started = Stopwatch.GetTimestamp();
        try
        {
            var stored = await Task.WhenAll(sets).WaitAsync(WriteTimeout, _stopping.Token);
            _metrics.WriteSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            var n = stored.Count(s => s);
            _metrics.WrittenPages.WithLabels("stored").Inc(n);
            _metrics.WrittenPages.WithLabels("present").Inc(stored.Length - n);
            _metrics.WrittenBytes.Inc(batch.Sum(w => (long)w.Value.Length));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Observe(sets);
            _metrics.Errors.WithLabels("write").Inc();
            _metrics.WriteDroppedPages.WithLabels("error").Inc(batch.Count);
            if (e is RedisException or TimeoutException) _logger.LogDebug(e, "KV store write failed");
            else _logger.LogWarning(e, "KV store write failed");
        }
    }

    private string Key(UInt128 pageHash) => KvPageKey.Of(_settings.KeyPrefix, _layout.Fingerprint, pageHash);

    /// <summary>Abandoned operations still finish (or fail) later; their outcome is read so that nothing goes unobserved.</summary>
    private static void Observe(IEnumerable<Task> tasks)
    {
        foreach (var t in tasks) _ = t.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
    }
}
