namespace MoeMesh.Engine.Demo;

/// <summary>Quantises a weight to float8 e4m3 with one scale per 128x128 block, as DeepSeek-V3 does.</summary>
public static class Fp8Quantiser
{
    public sealed record Scales(int Rows, int Cols, float[] Values);

    /// <summary>Returns the e4m3 codes and the per-block scale_inv (the factor that dequantises).</summary>
    public static (byte[] Codes, Scales Scales) Quantise(float[] w, int rows, int cols)
    {
        const int block = Checkpoint.CheckpointReader.Fp8BlockSize;
        var sr = (rows + block - 1) / block;
        var sc = (cols + block - 1) / block;
        var scales = new float[sr * sc];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++)
            {
                ref var s = ref scales[r / block * sc + c / block];
                s = Math.Max(s, Math.Abs(w[r * cols + c]));
            }
        for (var i = 0; i < scales.Length; i++) scales[i] = scales[i] == 0 ? 1 : scales[i] / 448f;
        var codes = new byte[w.Length];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++)
                codes[r * cols + c] = Checkpoint.DTypes.ToFp8E4M3(w[r * cols + c] / scales[r / block * sc + c / block]);
        return (codes, new Scales(sr, sc, scales));
    }
}
