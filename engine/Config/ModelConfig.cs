using System.Text.Json;

namespace MoeMesh.Engine.Config;

/// <summary>Architecture of a DeepSeek-V2/V3 checkpoint, read from its Hugging Face config.json.</summary>
public sealed record ModelConfig
{
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int MoeIntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public int? QLoraRank { get; init; }
    public required int KvLoraRank { get; init; }
    public required int QkNopeHeadDim { get; init; }
    public required int QkRopeHeadDim { get; init; }
    public required int VHeadDim { get; init; }
    public int NRoutedExperts { get; init; }
    public int NSharedExperts { get; init; }
    public int NumExpertsPerTok { get; init; }
    public int NGroup { get; init; } = 1;
    public int TopkGroup { get; init; } = 1;
    public TopkMethod TopkMethod { get; init; } = TopkMethod.Greedy;
    public ScoringFunc ScoringFunc { get; init; } = ScoringFunc.Softmax;
    public bool NormTopkProb { get; init; }
    public double RoutedScalingFactor { get; init; } = 1.0;
    public int FirstKDenseReplace { get; init; }
    public int MoeLayerFreq { get; init; } = 1;
    public double RopeTheta { get; init; } = 10000.0;
    public YarnScaling? RopeScaling { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public bool TieWordEmbeddings { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 4096;
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;

    /// <summary>Values cached per token per layer: the normalised latent and the rotated rope key.</summary>
    public int LatentCacheDim => KvLoraRank + QkRopeHeadDim;

    /// <summary>Hugging Face's rule for which decoder layers carry routed experts.</summary>
    public bool IsMoeLayer(int layer) =>
        NRoutedExperts > 0 && layer >= FirstKDenseReplace && layer % MoeLayerFreq == 0;

    public static ModelConfig Load(string path)
    {
        try
        {
            return Parse(File.ReadAllText(path));
        }
        catch (ModelConfigException e)
        {
            throw new ModelConfigException($"{path}: {e.Message}");
        }
    }

    public static ModelConfig Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var r = new ConfigReader(doc.RootElement);
        var modelType = r.String("model_type") ?? throw new ModelConfigException("missing key 'model_type'");
        if (modelType is not ("deepseek_v3" or "deepseek_v2"))
            throw new ModelConfigException($"model_type '{modelType}' is not supported (expected deepseek_v3 or deepseek_v2)");
        var qLora = r.Int("q_lora_rank");
        return new ModelConfig
        {
            ModelType = modelType,
            VocabSize = r.RequiredInt("vocab_size"),
            HiddenSize = r.RequiredInt("hidden_size"),
            IntermediateSize = r.RequiredInt("intermediate_size"),
            MoeIntermediateSize = r.Int("moe_intermediate_size") ?? 0,
            NumHiddenLayers = r.RequiredInt("num_hidden_layers"),
            NumAttentionHeads = r.RequiredInt("num_attention_heads"),
            QLoraRank = qLora is > 0 ? qLora : null,
            KvLoraRank = r.RequiredInt("kv_lora_rank"),
            QkNopeHeadDim = r.RequiredInt("qk_nope_head_dim"),
            QkRopeHeadDim = r.RequiredInt("qk_rope_head_dim"),
            VHeadDim = r.RequiredInt("v_head_dim"),
            NRoutedExperts = r.Int("n_routed_experts") ?? 0,
            NSharedExperts = r.Int("n_shared_experts") ?? 0,
            NumExpertsPerTok = r.Int("num_experts_per_tok") ?? 0,
            NGroup = r.Int("n_group") ?? 1,
            TopkGroup = r.Int("topk_group") ?? 1,
            TopkMethod = ParseTopkMethod(r.String("topk_method") ?? (modelType == "deepseek_v3" ? "noaux_tc" : "greedy")),
            ScoringFunc = ParseScoringFunc(r.String("scoring_func") ?? "softmax"),
            NormTopkProb = r.Bool("norm_topk_prob") ?? false,
            RoutedScalingFactor = r.Double("routed_scaling_factor") ?? 1.0,
            FirstKDenseReplace = r.Int("first_k_dense_replace") ?? 0,
            MoeLayerFreq = r.Int("moe_layer_freq") ?? 1,
            RopeTheta = r.Double("rope_theta") ?? 10000.0,
            RopeScaling = YarnScaling.Parse(r.Element("rope_scaling")),
            RmsNormEps = r.Double("rms_norm_eps") ?? 1e-6,
            TieWordEmbeddings = r.Bool("tie_word_embeddings") ?? false,
            MaxPositionEmbeddings = r.Int("max_position_embeddings") ?? 4096,
            BosTokenId = r.Int("bos_token_id"),
            EosTokenId = r.Int("eos_token_id"),
        }.Validated();
    }

    private ModelConfig Validated()
    {
        if (NRoutedExperts > 0)
        {
            if (NumExpertsPerTok <= 0 || NumExpertsPerTok > NRoutedExperts)
                throw new ModelConfigException($"num_experts_per_tok {NumExpertsPerTok} must be in 1..n_routed_experts ({NRoutedExperts})");
            if (NGroup <= 0 || NRoutedExperts % NGroup != 0)
                throw new ModelConfigException($"n_group {NGroup} must divide n_routed_experts {NRoutedExperts}");
            if (TopkGroup <= 0 || TopkGroup > NGroup)
                throw new ModelConfigException($"topk_group {TopkGroup} must be in 1..n_group ({NGroup})");
            if (MoeIntermediateSize <= 0)
                throw new ModelConfigException("moe_intermediate_size must be positive when n_routed_experts is set");
        }
        if (QkRopeHeadDim % 2 != 0)
            throw new ModelConfigException($"qk_rope_head_dim {QkRopeHeadDim} must be even");
        return this;
    }

    private static TopkMethod ParseTopkMethod(string value) => value switch
    {
        "noaux_tc" => TopkMethod.NoAuxTc,
        "greedy" => TopkMethod.Greedy,
        "group_limited_greedy" => TopkMethod.GroupLimitedGreedy,
        _ => throw new ModelConfigException($"topk_method '{value}' is not supported (noaux_tc, greedy, group_limited_greedy)"),
    };

    private static ScoringFunc ParseScoringFunc(string value) => value switch
    {
        "sigmoid" => ScoringFunc.Sigmoid,
        "softmax" => ScoringFunc.Softmax,
        _ => throw new ModelConfigException($"scoring_func '{value}' is not supported (sigmoid, softmax)"),
    };
}
