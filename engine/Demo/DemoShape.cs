namespace MoeMesh.Engine.Demo;

/// <summary>The architecture of a generated checkpoint.</summary>
public sealed record DemoShape
{
    public string ModelType { get; init; } = "deepseek_v3";
    public int Hidden { get; init; } = 64;
    public int Layers { get; init; } = 3;
    public int FirstDense { get; init; } = 1;
    public int Intermediate { get; init; } = 128;
    public int Heads { get; init; } = 4;
    public int? QLoraRank { get; init; } = 48;
    public int KvLoraRank { get; init; } = 32;
    public int NopeDim { get; init; } = 16;
    public int RopeDim { get; init; } = 8;
    public int VDim { get; init; } = 16;
    public int Experts { get; init; } = 16;
    public int ExpertWidth { get; init; } = 32;
    public int TopK { get; init; } = 4;
    public int Groups { get; init; } = 4;
    public int TopkGroups { get; init; } = 2;
    public int SharedExperts { get; init; } = 1;
    public string TopkMethod { get; init; } = "noaux_tc";
    public string ScoringFunc { get; init; } = "sigmoid";
    public bool NormTopkProb { get; init; } = true;
    public double RoutedScalingFactor { get; init; } = 2.5;

    /// <summary>Model vocabulary; null for exactly the generated tokenizer's size.</summary>
    public int? Vocab { get; init; }
    public int MaxPositions { get; init; } = 4096;
    public double RopeFactor { get; init; } = 4;
    public int OriginalMaxPositions { get; init; } = 512;
    public bool TieEmbeddings { get; init; }

    /// <summary>The small V3-shaped model the gateway serves without --model and the tests use.</summary>
    public static DemoShape Tiny { get; } = new();

    /// <summary>A DeepSeek-V2-shaped variant: plain q_proj, softmax router, group-limited greedy, no bias.</summary>
    public static DemoShape TinyV2 { get; } = new()
    {
        ModelType = "deepseek_v2",
        QLoraRank = null,
        TopkMethod = "group_limited_greedy",
        ScoringFunc = "softmax",
        NormTopkProb = false,
        RoutedScalingFactor = 16,
        TopK = 3,
        SharedExperts = 2,
    };

    /// <summary>The benchmark shape of the engine issue.</summary>
    public static DemoShape Benchmark { get; } = new()
    {
        Hidden = 1024,
        Layers = 8,
        FirstDense = 1,
        Intermediate = 2816,
        Heads = 16,
        QLoraRank = 384,
        KvLoraRank = 256,
        NopeDim = 64,
        RopeDim = 32,
        VDim = 64,
        Experts = 64,
        ExpertWidth = 256,
        TopK = 6,
        Groups = 8,
        TopkGroups = 4,
        SharedExperts = 1,
        Vocab = 32000,
        OriginalMaxPositions = 4096,
        MaxPositions = 16384,
    };
}
