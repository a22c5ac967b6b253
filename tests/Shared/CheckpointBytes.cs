using System.Text.Json;

namespace MoeMesh.Testing;

/// <summary>
/// The weight bytes a process should hold for a BF16 or F32 checkpoint, from the checkpoint's own safetensors header:
/// packed weights at their stored size, everything else as a float32 copy (4 bytes an element).
/// </summary>
public static class CheckpointBytes
{
    /// <summary>Bytes of the dense part: packed, the projections, the embedding and LM head are held as stored.</summary>
    public static long Dense(string modelDir, bool packed) =>
        Tensors(modelDir).Where(t => !IsExpert(t.Name))
            .Sum(t => t.Elements * (packed && IsPackedDense(t.Name) ? Stored(t) : 4));

    /// <summary>Bytes of the routed experts: packed, held as stored.</summary>
    public static long Experts(string modelDir, bool packed) =>
        Tensors(modelDir).Where(t => IsExpert(t.Name)).Sum(t => t.Elements * (packed ? Stored(t) : 4));

    private static bool IsExpert(string name) => name.Contains(".mlp.experts.", StringComparison.Ordinal);

    // q_proj, q_a/q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj and the MLPs' gate/up/down_proj.
    private static bool IsPackedDense(string name) =>
        name.Contains("_proj", StringComparison.Ordinal) || name is "model.embed_tokens.weight" or "lm_head.weight";

    private static long Stored((string Name, string DType, long Elements) t) => t.DType switch
    {
        "BF16" => 2,
        "F32" => 4,
        _ => throw new NotSupportedException($"{t.Name}: {t.DType} is not counted here"),
    };

    private static List<(string Name, string DType, long Elements)> Tensors(string modelDir)
    {
        using var stream = File.OpenRead(Path.Combine(modelDir, "model.safetensors"));
        var length = new byte[8];
        stream.ReadExactly(length);
        var header = new byte[BitConverter.ToInt64(length)];
        stream.ReadExactly(header);
        return JsonDocument.Parse(header).RootElement.EnumerateObject().Where(t => t.Name != "__metadata__")
            .Select(t => (t.Name, t.Value.GetProperty("dtype").GetString()!, t.Value.GetProperty("shape").EnumerateArray().Aggregate(1L, (n, d) => n * d.GetInt64())))
            .ToList();
    }
}
