namespace MoeMesh.Engine.Config;

/// <summary>How the router picks experts (config key topk_method).</summary>
public enum TopkMethod
{
    /// <summary>Plain top-k over the scores (DeepSeek-V2-Lite).</summary>
    Greedy,
    /// <summary>Top-k inside the best groups by their max score (DeepSeek-V2).</summary>
    GroupLimitedGreedy,
    /// <summary>Bias-corrected selection inside the best groups by their top-2 sum (DeepSeek-V3).</summary>
    NoAuxTc,
}
