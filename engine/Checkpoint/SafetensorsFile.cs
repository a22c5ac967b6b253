using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace MoeMesh.Engine.Checkpoint;

/// <summary>One .safetensors file: the header is parsed once; tensor bytes are read by offset on demand.</summary>
public sealed class SafetensorsFile : IDisposable
{
    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, Dictionary<string, TensorInfo> tensors)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Tensors = tensors;
    }

    public static SafetensorsFile Open(string path)
    {
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var fileLength = RandomAccess.GetLength(handle);
            Span<byte> lengthBytes = stackalloc byte[8];
            if (fileLength < 8 || RandomAccess.Read(handle, lengthBytes, 0) != 8)
                throw new CheckpointException($"{path}: truncated safetensors file (no header)");
            var headerLength = BinaryPrimitives.ReadInt64LittleEndian(lengthBytes);
            if (headerLength <= 0 || 8 + headerLength > fileLength)
                throw new CheckpointException($"{path}: truncated safetensors file (header of {headerLength} bytes)");
            var header = new byte[headerLength];
            RandomAccess.Read(handle, header, 8);
            var tensors = ParseHeader(path, header);
            var dataLength = fileLength - 8 - headerLength;
            foreach (var t in tensors.Values)
            {
                if (t.End > dataLength)
                    throw new CheckpointException($"{path}: tensor '{t.Name}' ends at byte {t.End} but the file holds {dataLength} data bytes (truncated file)");
            }
            return new SafetensorsFile(path, handle, 8 + headerLength, tensors);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads the raw little-endian bytes of one tensor.</summary>
    public byte[] ReadBytes(TensorInfo info)
    {
        var bytes = GC.AllocateUninitializedArray<byte>(checked((int)info.ByteLength));
        var read = 0;
        while (read < bytes.Length)
        {
            var n = RandomAccess.Read(_handle, bytes.AsSpan(read), _dataStart + info.Begin + read);
            if (n == 0) throw new CheckpointException($"{Path}: unexpected end of file reading '{info.Name}'");
            read += n;
        }
        return bytes;
    }

    public void Dispose() => _handle.Dispose();

    private static Dictionary<string, TensorInfo> ParseHeader(string path, byte[] header)
    {
        var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(header);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__") continue;
                var dtype = DTypes.Parse(prop.Value.GetProperty("dtype").GetString() ?? "");
                var shape = prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offsets = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var info = new TensorInfo(prop.Name, dtype, shape, offsets[0], offsets[1]);
                if (info.ByteLength != info.ElementCount * DTypes.Size(dtype))
                    throw new CheckpointException($"{path}: tensor '{prop.Name}' has {info.ByteLength} bytes for shape [{string.Join(",", shape)}] of {dtype}");
                tensors[prop.Name] = info;
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            throw new CheckpointException($"{path}: malformed safetensors header: {e.Message}");
        }
        return tensors;
    }
}
