using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>
/// The experts this node serves and advertises. Loads in the background so that /healthz answers at once.
/// A new placement (POST /v1/placement or a changed --placement file) is applied while serving: the new
/// experts are loaded and advertised at once, the dropped ones stop being advertised but stay servable for
/// --drain-seconds (gateways poll holdings every second) and are freed once no dispatch uses them.
/// </summary>
public sealed class ExpertHoldings(NodeOptions options, NodeMetrics metrics, ILogger<ExpertHoldings> logger) : BackgroundService
{
    private static readonly TimeSpan PlacementPoll = TimeSpan.FromSeconds(1);
    private readonly SemaphoreSlim _changing = new(1, 1);
    private volatile Served? _served;
    private volatile ExpertPlacement? _advertised;
    private string? _placementText;

    /// <summary>One generation of loaded experts and the dispatches using it.</summary>
    public sealed class Served(LocalExpertBackend backend)
    {
        private int _inFlight;
        private volatile bool _retired;
        private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public LocalExpertBackend Backend { get; } = backend;

        internal void Enter() => Interlocked.Increment(ref _inFlight);

        internal void Exit()
        {
            if (Interlocked.Decrement(ref _inFlight) == 0 && _retired) _idle.TrySetResult();
        }

        /// <summary>Marks it replaced; completes when its last dispatch has finished.</summary>
        internal Task RetireAsync()
        {
            _retired = true;
            if (Volatile.Read(ref _inFlight) == 0) _idle.TrySetResult();
            return _idle.Task;
        }
    }

    public ModelConfig Config { get; } = options.Config;
    public string Fingerprint { get; } = ModelFingerprint.Of(options.Model);

    /// <summary>What gateways are told this node holds; null until the first load finished.</summary>
    public ExpertPlacement? Advertised => _advertised;

    /// <summary>Bytes of expert weights loaded (those still draining included).</summary>
    public long ExpertBytes => _served?.Backend.ByteSize ?? 0;

    public string? LoadError { get; private set; }

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

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var first = options.PlacementFile is { } file ? ReadPlacementFile(file)! : options.Placement;
            await Task.Run(() =>
            {
                using var reader = new CheckpointReader(options.Model);
                var backend = new LocalExpertBackend(Config, reader, options.Compute, first);
                CheckpointBytesRead = reader.BytesRead;
                Swap(backend);
                _advertised = first;
                logger.LogInformation("Loaded {Count} layer-experts: {Bytes} bytes read, {Held} bytes held", first.Pairs.Count(), reader.BytesRead, backend.ByteSize);
            }, stoppingToken);
        }
        catch (Exception e) when (e is CheckpointException or IOException or ArgumentException or InvalidOperationException)
        {
            LoadError = e.Message;
            logger.LogCritical("Loading experts failed: {Error}", e.Message);
            return;
        }
        if (options.PlacementFile is not { } path) return;
        using var timer = new PeriodicTimer(PlacementPoll);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                if (ReadPlacementFile(path) is { } changed) await ApplyAsync(changed, stoppingToken);
            }
            catch (Exception e) when (e is ArgumentException or IOException)
            {
                logger.LogError("Placement file {Path} not applied: {Error}", path, e.Message);
            }
        }
    }

    /// <summary>The placement in the file if its text changed since the last read, else null.</summary>
    private ExpertPlacement? ReadPlacementFile(string path)
    {
        var text = File.ReadAllText(path);
        if (text == _placementText) return null;
        var placement = ExpertPlacement.Parse(Config, text);
        _placementText = text;
        return placement;
    }

    /// <summary>Moves to a new placement while serving (see the class summary); one change at a time.</summary>
    public async Task ApplyAsync(ExpertPlacement next, CancellationToken ct)
    {
        await _changing.WaitAsync(ct);
        try
        {
            var current = _served?.Backend ?? throw new InvalidOperationException("the node is still loading its experts");
            using var reader = new CheckpointReader(options.Model);
            var union = await Task.Run(() => current.Reshape(Config, reader, options.Compute, current.Placement.Union(next)), ct);
            _ = Swap(union);
            _advertised = next;
            logger.LogInformation("Placement changed: now advertising {Count} layer-experts; dropped ones drain for {Seconds} s", next.Pairs.Count(), options.Drain.TotalSeconds);
            await Task.Delay(options.Drain, ct);
            var final = union.Reshape(Config, reader, options.Compute, next);
            await Swap(final);
            union.DisposeExcept(final);
            logger.LogInformation("Placement change done: {Bytes} bytes of experts held", final.ByteSize);
        }
        finally
        {
            _changing.Release();
        }
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
