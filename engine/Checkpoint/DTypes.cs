using System.Runtime.InteropServices;

namespace MoeMesh.Engine.Checkpoint;

/// <summary>Names, sizes and conversions to float32 of the safetensors element types.</summary>
public static class DTypes
{
    private static readonly float[] Fp8E4M3Table = BuildFp8E4M3Table();

    /// <summary>The float32 value of every float8 e4m3fn code (the two NaN codes read NaN).</summary>
    public static ReadOnlySpan<float> Fp8E4M3Values => Fp8E4M3Table;

    public static DType Parse(string name) => name switch
    {
        "F32" => DType.F32,
        "F16" => DType.F16,
        "BF16" => DType.BF16,
        "F8_E4M3" => DType.F8E4M3,
        _ => throw new CheckpointException($"unsupported safetensors dtype '{name}'"),
    };

    public static string Name(DType dtype) => dtype switch
    {
        DType.F32 => "F32",
        DType.F16 => "F16",
        DType.BF16 => "BF16",
        DType.F8E4M3 => "F8_E4M3",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    public static int Size(DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.F16 or DType.BF16 => 2,
        DType.F8E4M3 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Widens little-endian raw elements to float32.</summary>
    public static float[] ToFloat32(ReadOnlySpan<byte> raw, DType dtype)
    {
        switch (dtype)
        {
            case DType.F32:
                return MemoryMarshal.Cast<byte, float>(raw).ToArray();
            case DType.BF16:
            {
                var src = MemoryMarshal.Cast<byte, ushort>(raw);
                var dst = GC.AllocateUninitializedArray<float>(src.Length);
                var bits = MemoryMarshal.Cast<float, uint>(dst.AsSpan());
                for (var i = 0; i < src.Length; i++) bits[i] = (uint)src[i] << 16;
                return dst;
            }
            case DType.F16:
            {
                var src = MemoryMarshal.Cast<byte, Half>(raw);
                var dst = GC.AllocateUninitializedArray<float>(src.Length);
                for (var i = 0; i < src.Length; i++) dst[i] = (float)src[i];
                return dst;
            }
            case DType.F8E4M3:
            {
                var dst = GC.AllocateUninitializedArray<float>(raw.Length);
                for (var i = 0; i < raw.Length; i++) dst[i] = Fp8E4M3Table[raw[i]];
                return dst;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    /// <summary>Rounds float32 to bfloat16 bits (round to nearest even), as torch does.</summary>
    public static ushort ToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return 0x7FC0;
        var rounding = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Encodes float32 to float8 e4m3fn (round to nearest even, saturating at ±448).</summary>
    public static byte ToFp8E4M3(float value)
    {
        var best = 0;
        var bestErr = float.PositiveInfinity;
        var clamped = Math.Clamp(value, -448f, 448f);
        // 254 finite codes; a search keeps the rounding rule obviously right and is only used offline.
        for (var code = 0; code < 256; code++)
        {
            var v = Fp8E4M3Table[code];
            if (float.IsNaN(v)) continue;
            var err = Math.Abs(v - clamped);
            if (err < bestErr || (err == bestErr && (code & 1) == 0 && (best & 1) == 1))
            {
                best = code;
                bestErr = err;
            }
        }
        return (byte)best;
    }

    private static float[] BuildFp8E4M3Table()
    {
        var table = new float[256];
        for (var code = 0; code < 256; code++)
        {
            var sign = (code & 0x80) != 0 ? -1f : 1f;
            var exponent = (code >> 3) & 0xF;
            var mantissa = code & 0x7;
            if (exponent == 0xF && mantissa == 0x7) table[code] = float.NaN;
            else if (exponent == 0) table[code] = sign * mantissa / 8f * MathF.Pow(2, -6);
            else table[code] = sign * (1 + mantissa / 8f) * MathF.Pow(2, exponent - 7);
        }
        return table;
    }
}
