using System.Text;
using System.Text.Json;

namespace MoeMesh.Engine.Checkpoint;

/// <summary>Writes a .safetensors file (8-byte header length, JSON header padded to 8 bytes, raw data).</summary>
public static class SafetensorsWriter
{
    /// <summary>One tensor to write: its raw little-endian bytes in the given dtype.</summary>
    public sealed record Entry(string Name, DType DType, long[] Shape, byte[] Data);

    public static void Write(string path, IReadOnlyList<Entry> entries, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>();
        if (metadata is not null) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var e in entries)
        {
            header[e.Name] = new { dtype = DTypes.Name(e.DType), shape = e.Shape, data_offsets = new[] { offset, offset + e.Data.LongLength } };
            offset += e.Data.LongLength;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        var padded = (json.Length + 7) / 8 * 8;
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        stream.Write(BitConverter.GetBytes((long)padded));
        stream.Write(json);
        for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var e in entries) stream.Write(e.Data);
    }

    /// <summary>Encodes float32 values as bfloat16 bytes.</summary>
    public static byte[] BFloat16Bytes(ReadOnlySpan<float> values)
    {
        var bytes = new byte[values.Length * 2];
        for (var i = 0; i < values.Length; i++)
        {
            var b = DTypes.ToBFloat16(values[i]);
            bytes[2 * i] = (byte)b;
            bytes[2 * i + 1] = (byte)(b >> 8);
        }
        return bytes;
    }

    public static byte[] Float32Bytes(ReadOnlySpan<float> values) =>
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray();
}
