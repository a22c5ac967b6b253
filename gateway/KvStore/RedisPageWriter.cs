using System.Diagnostics;
using System.Threading.Channels;
using MoeMesh.Gateway.Metrics;
using StackExchange.Redis;

namespace MoeMesh.Gateway.KvStore;

/// <summary>
/// Writes computed pages to Redis from one task, on its own connection so that big writes never queue ahead
/// of a lookup. The queue is bounded in bytes: past the bound, or while Redis is down, pages are dropped and
/// counted. SET NX: a page another gateway wrote first is not overwritten.
/// </summary>
internal sealed class RedisPageWriter(KvStoreSettings settings, KvStoreMetrics metrics, ILogger logger) : IAsyncDisposable
{
    /// <summary>Most bytes one pipelined round trip sends.</summary>
    private const long BatchBytes = 8 << 20;
    private static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(5);

    private readonly Channel<PageWrite> _queue = Channel.CreateUnbounded<PageWrite>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stopping = new();
    private long _queuedBytes;
    private Task _loop = Task.CompletedTask;

    public sealed record PageWrite(string Key, byte[] Value);

    /// <summary>The connection writes go through; null until connected.</summary>
    public ConnectionMultiplexer? Redis { get; set; }

    public void Start() => _loop = Task.Run(LoopAsync, CancellationToken.None);

    /// <summary>Reserves queue room for a value of <paramref name="bytes"/>; false (counted as dropped) when the queue is full.</summary>
    public bool TryReserve(int bytes)
    {
        if (Interlocked.Add(ref _queuedBytes, bytes) <= settings.WriteQueueBytes) return true;
        Interlocked.Add(ref _queuedBytes, -bytes);
        metrics.WriteDroppedPages.WithLabels("queue_full").Inc();
        return false;
    }

    /// <summary>Queues a value whose room was reserved; gives the room back when the writer has stopped.</summary>
    public void Enqueue(PageWrite write)
    {
        if (_queue.Writer.TryWrite(write)) metrics.WriteQueuePages.Inc();
        else Unreserve(write.Value.Length);
    }

    public void Unreserve(int bytes) => Interlocked.Add(ref _queuedBytes, -bytes);

    private async Task LoopAsync()
    {
        var batch = new List<PageWrite>();
        try
        {
            while (await _queue.Reader.WaitToReadAsync(_stopping.Token))
            {
                long bytes = 0;
                while (bytes < BatchBytes && _queue.Reader.TryRead(out var write))
                {
                    batch.Add(write);
                    bytes += write.Value.Length;
                }
                try
                {
                    await WriteAsync(batch, bytes);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Whatever failed, these pages are not shared and the writer goes on.
                    metrics.Errors.WithLabels("write").Inc();
                    metrics.WriteDroppedPages.WithLabels("error").Inc(batch.Count);
                    if (e is RedisException or TimeoutException) logger.LogDebug(e, "KV store write failed");
                    else logger.LogWarning(e, "KV store write failed");
                }
                finally
                {
                    Interlocked.Add(ref _queuedBytes, -bytes);
                    metrics.WriteQueuePages.Dec(batch.Count);
                    batch.Clear();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping: what is still queued is a cache's content, not worth delaying shutdown for.
        }
    }

    private async Task WriteAsync(List<PageWrite> batch, long bytes)
    {
        if (Redis is not { IsConnected: true } redis)
        {
            metrics.WriteDroppedPages.WithLabels("unavailable").Inc(batch.Count);
            return;
        }
        var db = redis.GetDatabase();
        var sets = new Task<bool>[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            KvPageFormat.Seal(batch[i].Value);
            sets[i] = db.StringSetAsync(batch[i].Key, batch[i].Value, settings.Ttl, When.NotExists);
        }
        var started = Stopwatch.GetTimestamp();
        var all = Task.WhenAll(sets);
        try
        {
            var stored = await all.WaitAsync(WriteTimeout, _stopping.Token);
            metrics.WriteSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            var n = stored.Count(s => s);
            metrics.WrittenPages.WithLabels("stored").Inc(n);
            metrics.WrittenPages.WithLabels("present").Inc(stored.Length - n);
            metrics.WrittenBytes.Inc(bytes);
        }
        catch
        {
            RedisKvPageStore.Observe(all);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stopping.CancelAsync();
        await _loop.ContinueWith(_ => { }, TaskScheduler.Default);
        Redis?.Dispose();
    }
}
