using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Runtime;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// The dense, stateful part of a DeepSeek-V2/V3 model: embeddings, decoder layers (routed experts
/// behind an <see cref="IExpertBackend"/>), final norm and LM head. The multi-token-prediction layer
/// (index num_hidden_layers) is not loaded.
/// </summary>
public sealed class DeepSeekModel
{
    private readonly Projection _embed;
    private readonly IReadOnlyList<DecoderLayer> _layers;
    private readonly RmsNorm _norm;
    private readonly Projection _lmHead;

    public ModelConfig Config { get; }
    public ComputeOptions Options { get; }
    public RotaryEmbedding Rope { get; }

    /// <summary>Which MLA form to use; tests force one form to compare it with the other.</summary>
    public AttentionMode AttentionMode { get; set; } = AttentionMode.Auto;

    /// <summary>Context tokens per attention tile; null sizes tiles by <see cref="AttentionPlan.ScoreBudget"/>. Tests force small tiles.</summary>
    public int? AttentionTileTokens { get; set; }

    /// <summary>
    /// Whether prefill slices may attend in libtorch's fused scaled-dot-product attention (<see cref="AttentionPlan.Fused"/>):
    /// by default on CUDA, where its kernels read the tile without materialising the scores; tests turn it on elsewhere.
    /// </summary>
    public bool FusedAttention { get; set; }

    private AttentionPlan Plan => new(AttentionMode, AttentionTileTokens, FusedAttention);

    /// <summary>The routed experts' backend: in-process, or expert nodes.</summary>
    public IExpertBackend Experts { get; }

    /// <summary>Bytes of the dense weights held: everything but the routed experts (a tied LM head counted once).</summary>
    public long DenseByteSize => _embed.ByteSize + _layers.Sum(l => l.ByteSize) + _norm.ByteSize + (ReferenceEquals(_lmHead, _embed) ? 0 : _lmHead.ByteSize);

    public DeepSeekModel(ModelConfig c, CheckpointReader r, ComputeOptions o, IExpertBackend experts)
    {
        Config = c;
        Options = o;
        Experts = experts;
        NativeHeap.KeepFreedMemory();
        FusedAttention = o.Device.type == TorchSharp.DeviceType.CUDA;
        Rope = new RotaryEmbedding(c, o.Device);
        _embed = Projection.Load(r, "model.embed_tokens.weight", o, c.VocabSize, c.HiddenSize);
        _layers = Enumerable.Range(0, c.NumHiddenLayers)
            .Select(i => new DecoderLayer(c, r, o, i, Rope.SoftmaxScale, experts))
            .ToArray();
        _norm = new RmsNorm(Weights.Load(r, "model.norm.weight", o, c.HiddenSize), c.RmsNormEps);
        _lmHead = c.TieWordEmbeddings && !r.Contains("lm_head.weight")
            ? _embed
            : Projection.Load(r, "lm_head.weight", o, c.VocabSize, c.HiddenSize);
    }

    /// <summary>Loads a checkpoint folder with every routed expert held in-process.</summary>
    public static DeepSeekModel Load(string directory, ComputeOptions options)
    {
        var config = ModelConfig.Load(Path.Combine(directory, "config.json"));
        using var reader = new CheckpointReader(directory);
        var experts = new LocalExpertBackend(config, reader, options, ExpertSet.Parse("all", config.NRoutedExperts));
        return new DeepSeekModel(config, reader, options, experts);
    }

    /// <summary>Loads a checkpoint folder's dense part; the routed experts are <paramref name="experts"/> (none are read here).</summary>
    public static DeepSeekModel Load(string directory, ComputeOptions options, IExpertBackend experts)
    {
        var config = ModelConfig.Load(Path.Combine(directory, "config.json"));
        using var reader = new CheckpointReader(directory);
        return new DeepSeekModel(config, reader, options, experts);
    }

    /// <summary>Runs the new tokens of a batch through every layer; returns float32 logits of the requested rows.</summary>
    public Tensor Forward(ForwardBatch batch, LatentKvCache cache, Tensor logitRows)
    {
        using var threads = LibtorchThreads.ForStep(InKernels(batch.TokenIds.shape[0]));
        using var scope = NewDisposeScope();
        var (cos, sin) = Rope.Angles(batch.Positions);
        var x = _embed.Rows(batch.TokenIds);
        foreach (var layer in _layers)
            x = layer.Forward(x, batch, cos, sin, cache.Layer(layer.Index), Plan);
        return Logits(x, logitRows).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs a step split into two micro-batches (disjoint sequences; rows of the second follow the
    /// first's) as a two-stage pipeline, so that each one's expert dispatch is in flight while the
    /// other runs its attention and shared experts:
    /// A.begin(L), B.finish(L-1), B.begin(L), A.finish(L). Same math as one batch, in another order.
    /// </summary>
    public Tensor Forward(ForwardBatch a, ForwardBatch b, LatentKvCache cache, Tensor logitRows)
    {
        using var threads = LibtorchThreads.ForStep(InKernels(a.TokenIds.shape[0] + b.TokenIds.shape[0]));
        using var scope = NewDisposeScope();
        var rowsA = (int)a.TokenIds.shape[0];
        var (cosA, sinA) = Rope.Angles(a.Positions);
        var (cosB, sinB) = Rope.Angles(b.Positions);
        var xA = _embed.Rows(a.TokenIds);
        var xB = _embed.Rows(b.TokenIds);
        DecoderLayer.Step? pendingB = null;
        DecoderLayer? previous = null;
        foreach (var layer in _layers)
        {
            var kv = cache.Layer(layer.Index);
            var stepA = layer.Begin(xA, a, cosA, sinA, kv, Plan);
            if (pendingB is not null) xB = OnRows(rowsA, () => previous!.Finish(pendingB));
            pendingB = OnRows(rowsA, () => layer.Begin(xB, b, cosB, sinB, kv, Plan));
            xA = layer.Finish(stepA);
            previous = layer;
        }
        if (pendingB is not null) xB = OnRows(rowsA, () => previous!.Finish(pendingB));
        return Logits(cat([xA, xB], 0), logitRows).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether a step of <paramref name="rows"/> new tokens runs its heavy products in the engine's kernels: dense
    /// weights packed and every projection under <see cref="Projection.KernelRows"/> (routed experts held elsewhere,
    /// on expert nodes, leave the cores to this process as well).
    /// </summary>
    private bool InKernels(long rows) => Options.HoldsDensePacked && rows <= Projection.KernelRows;

    /// <summary>Runs work of the second micro-batch; rows of unavailable experts are reported in batch numbering.</summary>
    private static T OnRows<T>(int offset, Func<T> work)
    {
        try
        {
            return work();
        }
        catch (ExpertsUnavailableException e)
        {
            throw e.Shifted(offset);
        }
    }

    private Tensor Logits(Tensor x, Tensor logitRows)
    {
        using var time = Options.Profile?.Time(StepPart.LmHead);
        var last = _norm.Forward(x.index_select(0, logitRows));
        return _lmHead.Forward(last).to(ScalarType.Float32);
    }
}
