using System.Text.Json;

namespace MoeMesh.Engine.Config;

/// <summary>YaRN rope scaling parameters (config key rope_scaling with type "yarn").</summary>
public sealed record YarnScaling(
    double Factor,
    int OriginalMaxPositionEmbeddings,
    double BetaFast,
    double BetaSlow,
    double Mscale,
    double MscaleAllDim)
{
    internal static YarnScaling? Parse(JsonElement? element)
    {
        if (element is not { ValueKind: JsonValueKind.Object } e) return null;
        var r = new ConfigReader(e, "rope_scaling.");
        var type = r.String("type") ?? r.String("rope_type");
        if (type != "yarn")
            throw new ModelConfigException($"rope_scaling.type '{type}' is not supported (only yarn)");
        return new YarnScaling(
            r.Double("factor") ?? throw new ModelConfigException("missing key 'rope_scaling.factor'"),
            r.Int("original_max_position_embeddings") ?? throw new ModelConfigException("missing key 'rope_scaling.original_max_position_embeddings'"),
            r.Double("beta_fast") ?? 32,
            r.Double("beta_slow") ?? 1,
            r.Double("mscale") ?? 1,
            r.Double("mscale_all_dim") ?? 0);
    }

    /// <summary>YaRN's attention temperature: 0.1·m·ln(factor) + 1 for factor above 1.</summary>
    public static double GetMscale(double scale, double mscale) =>
        scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;
}
