using System.Collections.Concurrent;
using System.Diagnostics;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Gateway.Hosting;
using MoeMesh.Gateway.KvStore;
using MoeMesh.Gateway.Metrics;

namespace MoeMesh.Gateway.Serving;

/// <summary>
/// Owns the engine on one dedicated thread (the model's compute thread): takes submissions and aborts from request handlers,
/// steps the engine while there is work, and publishes each sequence's events to its handle.
/// At most --max-queue sequences wait (submitted or in the scheduler's waiting list); more are refused.
/// On shutdown it stops accepting, lets running sequences finish for the host's grace period, then
/// ends the rest with finish_reason "abort". If the loop itself fails, every request still waiting or
/// running ends with an error, /readyz turns 503 and the host stops with exit code 1, so that its
/// supervisor restarts it.
/// With a shared KV store, a prompt is first looked up there (off the loop, other sequences keep decoding);
/// the pages found are imported into the cache just before the sequence joins the engine, and the pages
/// the engine computes are offered to the store after each step.
/// </summary>
public sealed class EngineLoop(ModelHost host, GatewayOptions options, GatewayMetrics metrics, IHostApplicationLifetime lifetime, ILogger<EngineLoop> logger,
    IKvPageStore? store = null, KvStoreMetrics? storeMetrics = null)
    : IHostedService
{
    private const string FailedMessage = "the inference engine failed; the server is restarting, retry the request";
    private const string StoppingMessage = "the server is shutting down";

    private readonly ConcurrentQueue<GenerationHandle> _submitted = new();
    private readonly ConcurrentQueue<GenerationHandle> _aborted = new();
    private readonly Dictionary<long, GenerationHandle> _active = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    // Cancelled when shutdown begins (before the server stops, which waits for requests in flight): a store lookup
    // still in flight gives up, and its request is computed in the grace period.
    private readonly CancellationTokenSource _stopLookups = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Submit and the final drain take it, so that no submission slips in after the loop has ended.
    private readonly Lock _gate = new();
    private Task? _running;
    private volatile bool _accepting = true;
    private volatile bool _failed;
    // Set once the loop has ended everything: a store lookup finishing later ends its handles itself.
    private (FinishReason Reason, string Message)? _ended;
    private int _queued;
    private int _engineWaiting;
    private readonly SharedPrefixLoader? _shared = store is null ? null : new(store, host.Engine, storeMetrics, logger);

    private LlmEngine Engine => host.Engine;

    public bool Accepting => _accepting;

    /// <summary>The loop died; the process is stopping with exit code 1.</summary>
    public bool Failed => _failed;

    /// <summary>Sequences waiting: submitted but not taken by the loop, plus those in the scheduler's waiting list.</summary>
    public int Waiting => Volatile.Read(ref _queued) + Volatile.Read(ref _engineWaiting);

    /// <summary>Aborts asked for and not yet carried out by the loop.</summary>
    internal int PendingAborts => _aborted.Count;

    /// <summary>Runs on the loop thread before each engine step; tests use it to hold or break the loop.</summary>
    internal Action? BeforeStep { get; set; }

    /// <summary>Queues sequences; throws <see cref="QueueFullException"/> past --max-queue and <see cref="ServiceStoppingException"/> once stopping.</summary>
    public void Submit(IReadOnlyList<GenerationHandle> handles)
    {
        var lookUp = _shared is not null && options.PrefixCaching ? handles.Where(h => h.Sampling.PromptLogprobs is null).ToList() : [];
        lock (_gate)
        {
            if (!_accepting) throw new ServiceStoppingException(_failed ? FailedMessage : StoppingMessage);
            if (Interlocked.Add(ref _queued, handles.Count) + Volatile.Read(ref _engineWaiting) > options.MaxQueue)
            {
                Interlocked.Add(ref _queued, -handles.Count);
                throw new QueueFullException();
            }
            foreach (var h in handles.Except(lookUp)) _submitted.Enqueue(h);
        }
        // The choices of one prompt share one lookup; they count as queued meanwhile.
        foreach (var group in lookUp.GroupBy(h => h.Prompt)) _ = LookUpThenQueueAsync(group.ToList());
        _wake.Release();
    }

    /// <summary>Looks a prompt's pages up in the shared store (those not cached here already), then queues its handles with what was found.</summary>
    private async Task LookUpThenQueueAsync(List<GenerationHandle> group)
    {
        var found = await _shared!.FindAsync(group[0].Prompt, _stopLookups.Token);
        lock (_gate)
        {
            if (_ended is { } end)
            {
                foreach (var h in group)
                {
                    Interlocked.Decrement(ref _queued);
                    End(h, end.Reason, end.Message);
                }
                return;
            }
            group[0].Imported = found;
            foreach (var h in group) _submitted.Enqueue(h);
        }
        _wake.Release();
    }

    /// <summary>Ends a sequence early (client gone), wherever it is; its pages are freed on the loop thread within a step.</summary>
    public void Abort(GenerationHandle handle)
    {
        // The flag covers a handle the loop has not taken yet: it is ended when taken, never started.
        handle.AbortRequested = true;
        _aborted.Enqueue(handle);
        _wake.Release();
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStopping.Register(_stopLookups.Cancel);
        metrics.WeightBytes.WithLabels("dense").Set(host.DenseWeightBytes);
        metrics.WeightBytes.WithLabels("routed_experts").Set(host.ExpertWeightBytes);
        metrics.KvCacheBytes.Set(Engine.Cache.TotalBytes);
        Engine.StepFailed = (e, reference) => logger.LogError(e, "Engine step failed (reference {Reference}); its sequences end with an error", reference);
        // On the thread the model was loaded on: libtorch keeps one set of worker threads (see ComputeThread).
        _running = host.ComputeThread.RunAsync(() =>
        {
            Run();
            return true;
        });
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_gate) _accepting = false;
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
        if (_running is not null) await _running;
    }

    private void Run()
    {
        var (reason, message) = (FinishReason.Abort, StoppingMessage);
        try
        {
            Loop();
        }
        catch (Exception e)
        {
            _failed = true;
            (reason, message) = (FinishReason.Error, FailedMessage);
            logger.LogCritical(e, "Engine loop failed; ending every request and stopping the gateway");
        }
        EndEverything(reason, message);
        _drained.TrySetResult();
        // Not on this thread: stopping the host joins it.
        if (_failed) Task.Run(lifetime.StopApplication);
    }

    private void Loop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TakeSubmissions();
            TakeAborts();
            // Nothing running and nothing queued (a store lookup still in flight counts as queued).
            if (!_accepting && _active.Count == 0 && Volatile.Read(ref _queued) == 0) _drained.TrySetResult();
            if (!Engine.HasWork)
            {
                UpdateGauges();
                _wake.Wait(TimeSpan.FromSeconds(1));
                continue;
            }
            BeforeStep?.Invoke();
            foreach (var update in Engine.Step()) Publish(update);
            // Before the next step, which may reuse these pages.
            _shared?.OfferComputed();
            UpdateGauges();
        }
    }

    /// <summary>Ends what is left (running sequences, waiting ones, submissions not taken) and closes the door.</summary>
    private void EndEverything(FinishReason reason, string message)
    {
        lock (_gate)
        {
            _accepting = false;
            _ended = (reason, message);
            while (_submitted.TryDequeue(out var late))
            {
                Interlocked.Decrement(ref _queued);
                End(late, reason, message);
            }
        }
        foreach (var handle in _active.Values.ToList())
        {
            try
            {
                if (handle.Sequence is { IsFinished: false } seq) Engine.Abort(seq);
            }
            catch (Exception e)
            {
                logger.LogError(e, "Freeing sequence {Id} failed", handle.Sequence?.Id);
            }
            Finish(handle, reason, message);
        }
        UpdateGauges();
    }

    private void TakeSubmissions()
    {
        while (_submitted.TryDequeue(out var h))
        {
            try
            {
                if (h.AbortRequested)
                {
                    End(h, FinishReason.Abort, null);
                    continue;
                }
                h.Sequence = Engine.Add(h.Prompt, h.Sampling);
                _active[h.Sequence.Id] = h;
                if (h.Imported is { } imported)
                {
                    h.Imported = null;
                    _shared!.Import(h.Prompt, imported);
                }
                metrics.PromptTokens.Inc(h.Prompt.Count);
            }
            catch (ArgumentException e)
            {
                End(h, FinishReason.Error, e.Message);
            }
            catch
            {
                // The loop is about to fail; this handle is in neither queue any more, so it is ended here.
                End(h, FinishReason.Error, FailedMessage);
                throw;
            }
            finally
            {
                // Counted as waiting in the engine before it stops counting as queued: the bound is never undercounted.
                Volatile.Write(ref _engineWaiting, Engine.WaitingCount);
                Interlocked.Decrement(ref _queued);
            }
        }
    }

    private void TakeAborts()
    {
        while (_aborted.TryDequeue(out var h))
        {
            // Not taken yet: TakeSubmissions sees the flag and ends it there.
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
        End(h, reason, error);
    }

    private void End(GenerationHandle h, FinishReason reason, string? error)
    {
        metrics.RequestsFinished.WithLabels(reason.ToString().ToLowerInvariant()).Inc();
        h.Publish(new GenerationEvent(null, null, "", reason, error));
    }

    private void UpdateGauges()
    {
        Volatile.Write(ref _engineWaiting, Engine.WaitingCount);
        metrics.RequestsRunning.Set(Engine.RunningCount);
        metrics.KvCacheUsage.Set(Engine.CacheUsage);
        metrics.PrefixCacheQueries.IncTo(Engine.PrefixQueryTokens);
        metrics.PrefixCacheHits.IncTo(Engine.PrefixHitTokens);
    }
}
