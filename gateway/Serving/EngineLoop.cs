using System.Collections.Concurrent;
using System.Diagnostics;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Gateway.Hosting;
using MoeMesh.Gateway.Metrics;

namespace MoeMesh.Gateway.Serving;

/// <summary>
/// Owns the engine on one dedicated thread: takes submissions and aborts from request handlers,
/// steps the engine while there is work, and publishes each sequence's events to its handle.
/// On shutdown it stops accepting, lets running sequences finish for the host's grace period, then
/// ends the rest with finish_reason "abort".
/// </summary>
public sealed class EngineLoop(ModelHost host, GatewayOptions options, GatewayMetrics metrics, ILogger<EngineLoop> logger) : IHostedService
{
    private readonly ConcurrentQueue<GenerationHandle> _submitted = new();
    private readonly ConcurrentQueue<GenerationHandle> _aborted = new();
    private readonly Dictionary<long, GenerationHandle> _active = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? _thread;
    private volatile bool _accepting = true;
    private int _queued;

    private LlmEngine Engine => host.Engine;

    public bool Accepting => _accepting;

    /// <summary>Queues sequences; throws <see cref="QueueFullException"/> past --max-queue.</summary>
    public void Submit(IReadOnlyList<GenerationHandle> handles)
    {
        if (!_accepting) throw new ServiceStoppingException();
        if (Interlocked.Add(ref _queued, handles.Count) > options.MaxQueue)
        {
            Interlocked.Add(ref _queued, -handles.Count);
            throw new QueueFullException();
        }
        foreach (var h in handles) _submitted.Enqueue(h);
        _wake.Release();
    }

    /// <summary>Ends a sequence early (client gone); its pages are freed on the loop thread.</summary>
    public void Abort(GenerationHandle handle)
    {
        _aborted.Enqueue(handle);
        _wake.Release();
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "moemesh-engine" };
        _thread.Start();
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _accepting = false;
        _wake.Release();
        // Grace period: in-flight sequences finish until the host's shutdown timeout fires.
        try
        {
            await _drained.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            logger.LogWarning("Shutdown timeout reached; ending the sequences still running");
        }
        _stop.Cancel();
        _wake.Release();
        _thread?.Join();
    }

    private void Run()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                TakeSubmissions();
                TakeAborts();
                if (!_accepting && _active.Count == 0) _drained.TrySetResult();
                if (!Engine.HasWork)
                {
                    UpdateGauges();
                    _wake.Wait(TimeSpan.FromSeconds(1));
                    continue;
                }
                foreach (var update in Engine.Step()) Publish(update);
                UpdateGauges();
            }
        }
        catch (Exception e)
        {
            logger.LogCritical(e, "Engine loop failed");
            _drained.TrySetResult();
        }
        // Whatever is left ends now: running sequences and submissions that raced with the stop.
        while (_submitted.TryDequeue(out var late)) late.Publish(new GenerationEvent(null, null, "", FinishReason.Abort, "the server is shutting down"));
        foreach (var handle in _active.Values.ToList())
        {
            if (handle.Sequence is { IsFinished: false } seq) Engine.Abort(seq);
            Finish(handle, FinishReason.Abort, "the server is shutting down");
        }
    }

    private void TakeSubmissions()
    {
        while (_submitted.TryDequeue(out var h))
        {
            Interlocked.Decrement(ref _queued);
            try
            {
                h.Sequence = Engine.Add(h.Prompt, h.Sampling);
                _active[h.Sequence.Id] = h;
                metrics.PromptTokens.Inc(h.Prompt.Count);
            }
            catch (ArgumentException e)
            {
                h.Publish(new GenerationEvent(null, null, "", FinishReason.Error, e.Message));
            }
        }
    }

    private void TakeAborts()
    {
        while (_aborted.TryDequeue(out var h))
        {
            if (h.Sequence is not { } seq || seq.IsFinished) continue;
            Engine.Abort(seq);
            Finish(h, FinishReason.Abort, null);
        }
    }

    private void Publish(SequenceUpdate u)
    {
        if (!_active.TryGetValue(u.Sequence.Id, out var h)) return;
        var now = Stopwatch.GetTimestamp();
        if (u.TokenId is not null)
        {
            metrics.GenerationTokens.Inc();
            if (h.Tokens++ == 0) metrics.TimeToFirstToken.Observe(Stopwatch.GetElapsedTime(h.SubmittedAt, now).TotalSeconds);
            else metrics.InterTokenLatency.Observe(Stopwatch.GetElapsedTime(h.LastTokenAt, now).TotalSeconds);
            h.LastTokenAt = now;
        }
        if (!u.Finished)
        {
            h.Publish(new GenerationEvent(u.TokenId, u.Logprob, u.TextDelta, null, null));
            return;
        }
        _active.Remove(u.Sequence.Id);
        metrics.RequestLatency.Observe(Stopwatch.GetElapsedTime(h.SubmittedAt, now).TotalSeconds);
        var reason = u.Sequence.FinishReason ?? FinishReason.Stop;
        metrics.RequestsFinished.WithLabels(reason.ToString().ToLowerInvariant()).Inc();
        h.Publish(new GenerationEvent(u.TokenId, u.Logprob, u.TextDelta, reason, u.Sequence.Error));
    }

    private void Finish(GenerationHandle h, FinishReason reason, string? error)
    {
        if (h.Sequence is { } seq) _active.Remove(seq.Id);
        metrics.RequestsFinished.WithLabels(reason.ToString().ToLowerInvariant()).Inc();
        h.Publish(new GenerationEvent(null, null, "", reason, error));
    }

    private void UpdateGauges()
    {
        metrics.RequestsRunning.Set(Engine.RunningCount);
        metrics.RequestsWaiting.Set(Engine.WaitingCount + Volatile.Read(ref _queued));
        metrics.KvCacheUsage.Set(Engine.CacheUsage);
        metrics.PrefixCacheQueries.IncTo(Engine.PrefixQueryTokens);
        metrics.PrefixCacheHits.IncTo(Engine.PrefixHitTokens);
    }
}
