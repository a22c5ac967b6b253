using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Kernels;
using MoeMesh.Engine.Runtime;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>
/// The experts this node serves and advertises. Loads in the background so that /healthz answers at once.
/// A new placement (POST /v1/placement or a changed --placement file) is applied while serving: the new
/// experts are loaded and advertised at once, the dropped ones stop being advertised but stay servable for
/// --drain-seconds (gateways poll holdings every second), and their weights are freed only once no dispatch
/// that could use them is still running, whatever the drain time. A placement that fails to load is
/// reported (/v1/experts, metrics, log) and the node keeps serving what it held.
/// </summary>
public sealed class ExpertHoldings(NodeOptions options, NodeMetrics metrics, ILogger<ExpertHoldings> logger) : BackgroundService
{
    private static readonly TimeSpan PlacementPoll = TimeSpan.FromSeconds(1);
    private readonly SemaphoreSlim _changing = new(1, 1);
    private volatile Served? _served;
    private volatile ExpertPlacement? _advertised;
    private volatile PlacementState _state = PlacementState.Loading;
    private volatile string? _placementError;
    private string? _placementText;

    /// <summary>Where the node is in loading or changing its placement.</summary>
    public enum PlacementState
    {
        /// <summary>The first load is running.</summary>
        Loading,
        /// <summary>Serving its placement; no change under way.</summary>
        Steady,
        /// <summary>A new placement's experts are being read.</summary>
        Applying,
        /// <summary>Advertising the new placement; dropped experts still serve gateways that have not seen it.</summary>
        Draining,
        /// <summary>Waiting for dispatches still running on dropped experts before freeing them.</summary>
        WaitingForDispatches,
        /// <summary>The first load failed; the node serves nothing.</summary>
        Failed,
    }

    /// <summary>One generation of loaded experts and the dispatches using it.</summary>
    public sealed class Served(LocalExpertBackend backend)
    {
        private readonly Lock _lock = new();
        private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _inFlight;
        private bool _retired;

        public LocalExpertBackend Backend { get; } = backend;

        internal void Enter()
        {
            lock (_lock) _inFlight++;
        }

        internal void Exit()
        {
            lock (_lock)
            {
                if (--_inFlight == 0 && _retired) _idle.TrySetResult();
            }
        }

        /// <summary>Marks it replaced; completes when its last dispatch has finished.</summary>
        internal Task RetireAsync()
        {
            lock (_lock)
            {
                _retired = true;
                if (_inFlight == 0) _idle.TrySetResult();
            }
            return _idle.Task;
        }
    }

    public ModelConfig Config { get; } = options.Config;

    /// <summary>The thread that loads the experts and computes every dispatch, in arrival order.</summary>
    public ComputeThread Compute { get; } = new("moemesh-experts");

    public override void Dispose()
    {
        base.Dispose();
        Compute.Dispose();
    }

    public string Fingerprint { get; } = ModelFingerprint.Of(options.Model);

    /// <summary>What gateways are told this node holds; null until the first load finished.</summary>
    public ExpertPlacement? Advertised => _advertised;

    /// <summary>Bytes of expert weights loaded (those still draining included).</summary>
    public long ExpertBytes => _served?.Backend.ByteSize ?? 0;

    public PlacementState State => _state;

    /// <summary>Why the last placement change failed; null after one succeeded.</summary>
    public string? PlacementError => _placementError;

    /// <summary>Whether the first load failed (the log says why).</summary>
    public bool LoadFailed => _state == PlacementState.Failed;

    /// <summary>Bytes read from the checkpoint by the first load.</summary>
    public long CheckpointBytesRead { get; private set; }

    /// <summary>Takes the current experts for one dispatch; <see cref="Release"/> it when done. Null while loading.</summary>
    public Served? Acquire()
    {
        // Re-check after entering: a swap in between may have retired what we entered.
        while (_served is { } s)
        {
            s.Enter();
            if (ReferenceEquals(s, _served)) return s;
            s.Exit();
        }
        return null;
    }

    public void Release(Served s) => s.Exit();

    private void Advertise(ExpertPlacement placement)
    {
        _advertised = placement;
        metrics.PlacementGeneration.Set(placement.Generation ?? -1);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var first = options.PlacementFile is { } file ? ReadPlacementFile(file)! : options.Placement;
            // On the compute thread dispatches run on, with its libtorch threads and the kernels' set: one set of OpenMP workers (see ComputeThread).
            await Compute.RunAsync(() =>
            {
                if (options.Threads is { } threads)
                {
                    TorchSharp.torch.set_num_threads(threads);
                    KernelThreads.Threads = threads;
                }
                using var reader = new CheckpointReader(options.Model);
                var backend = new LocalExpertBackend(Config, reader, options.Compute, first);
                CheckpointBytesRead = reader.BytesRead;
                Swap(backend);
                Advertise(first);
                _state = PlacementState.Steady;
                logger.LogInformation("Loaded {Count} layer-experts: {Bytes} bytes read, {Held} bytes held", first.Pairs.Count(), reader.BytesRead, backend.ByteSize);
                return true;
            }).WaitAsync(stoppingToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _state = PlacementState.Failed;
            logger.LogCritical(e, "Loading experts failed");
            return;
        }
        if (options.PlacementFile is not { } path) return;
        using var timer = new PeriodicTimer(PlacementPoll);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            ExpertPlacement? changed;
            try
            {
                changed = ReadPlacementFile(path);
            }
            catch (Exception e) when (e is ArgumentException or IOException)
            {
                Report($"placement file {path}: {e.Message}", e);
                continue;
            }
            // A change that fails is tried again at the next poll (a checkpoint on a volume may come back).
            if (changed is not null && !await ApplyAsync(changed, stoppingToken)) _placementText = null;
        }
    }

    /// <summary>The placement in the file if its text changed since the last read, else null.</summary>
    private ExpertPlacement? ReadPlacementFile(string path)
    {
        var text = File.ReadAllText(path);
        if (text == _placementText) return null;
        _placementText = text;
        return ExpertPlacement.Parse(Config, text);
    }

    /// <summary>
    /// Moves to a new placement while serving (see the class summary); one change at a time. Never throws for a
    /// placement that cannot be loaded: the failure is reported, the node keeps its experts, and it returns false.
    /// </summary>
    public async Task<bool> ApplyAsync(ExpertPlacement next, CancellationToken ct)
    {
        await _changing.WaitAsync(ct);
        try
        {
            var current = _served?.Backend ?? throw new InvalidOperationException("the node is still loading its experts");
            _state = PlacementState.Applying;
            using var reader = new CheckpointReader(options.Model);
            // Loading is not on the compute thread (dispatches go on meanwhile) but on a thread of its own that ends with
            // it, taking its libtorch workers with it.
            var union = await Task.Factory.StartNew(() => current.Reshape(Config, reader, options.Compute, current.Placement.Union(next)), ct,
                TaskCreationOptions.LongRunning, TaskScheduler.Default);
            var before = Swap(union);
            Advertise(next);
            _state = PlacementState.Draining;
            logger.LogInformation("Placement changed: now advertising {Count} layer-experts; dropped ones drain for {Seconds} s", next.Pairs.Count(), options.Drain.TotalSeconds);
            await Task.Delay(options.Drain, ct);
            var final = union.Reshape(Config, reader, options.Compute, next);
            var during = Swap(final);
            // Dispatches that entered before either swap may still use a dropped expert: free nothing until both are done.
            _state = PlacementState.WaitingForDispatches;
            await Task.WhenAll(before, during).WaitAsync(ct);
            union.DisposeExcept(final);
            _placementError = null;
            _state = PlacementState.Steady;
            metrics.PlacementChanges.WithLabels("applied").Inc();
            logger.LogInformation("Placement change done: {Bytes} bytes of experts held", final.ByteSize);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            if (_served is not null) _state = PlacementState.Steady;
            Report($"placement not applied: {e.Message}", e);
            return false;
        }
        finally
        {
            _changing.Release();
        }
    }

    private void Report(string error, Exception e)
    {
        metrics.PlacementChanges.WithLabels("failed").Inc();
        // A placement file retried every second logs its failure once, not every second.
        if (error != _placementError) logger.LogError(e, "Placement change failed: {Error}", error);
        _placementError = error;
    }

    /// <summary>Serves <paramref name="backend"/> from now on; the returned task completes when the previous generation is idle.</summary>
    private Task Swap(LocalExpertBackend backend)
    {
        var previous = _served;
        _served = new Served(backend);
        metrics.ExpertBytes.Set(backend.ByteSize);
        return previous?.RetireAsync() ?? Task.CompletedTask;
    }
}
