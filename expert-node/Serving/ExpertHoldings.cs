using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Model;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>The experts this node holds, loaded in the background so that /healthz answers at once.</summary>
public sealed class ExpertHoldings(NodeOptions options, NodeMetrics metrics, ILogger<ExpertHoldings> logger) : BackgroundService
{
    private volatile LocalExpertBackend? _backend;

    public ModelConfig Config { get; } = options.Config;
    public string Fingerprint { get; } = ModelFingerprint.Of(options.Model);
    public ComputeOptions Compute { get; } = options.Compute;
    public IReadOnlyList<int> Experts => options.Experts;
    public IReadOnlyList<int> Layers { get; } = Enumerable.Range(0, options.Config.NumHiddenLayers).Where(options.Config.IsMoeLayer).ToArray();

    /// <summary>The loaded experts; null until loading finished.</summary>
    public LocalExpertBackend? Backend => _backend;

    public string? LoadError { get; private set; }

    /// <summary>Bytes read from the checkpoint to load the experts.</summary>
    public long CheckpointBytesRead { get; private set; }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        try
        {
            using var reader = new CheckpointReader(options.Model);
            var backend = new LocalExpertBackend(Config, reader, Compute, Experts);
            metrics.ExpertBytes.Set(backend.ByteSize);
            CheckpointBytesRead = reader.BytesRead;
            logger.LogInformation("Loaded {Count} experts on each of {Layers} MoE layers: {Bytes} bytes read, {Held} bytes held",
                Experts.Count, Layers.Count, reader.BytesRead, backend.ByteSize);
            _backend = backend;
        }
        catch (Exception e) when (e is CheckpointException or IOException or InvalidOperationException)
        {
            LoadError = e.Message;
            logger.LogCritical("Loading experts failed: {Error}", e.Message);
        }
    }, stoppingToken);
}
