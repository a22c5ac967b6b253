using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Checkpoint;

/// <summary>
/// A Hugging Face checkpoint folder (model.safetensors or shards listed in model.safetensors.index.json).
/// Tensors are read individually by offset, so a process loads only what it asks for.
/// FP8 (e4m3) weights with DeepSeek-V3's 128x128 block scales are dequantised when read as float32, or read as
/// stored with their scales (<see cref="ReadFp8"/>).
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    public const int Fp8BlockSize = 128;

    private readonly Dictionary<string, SafetensorsFile> _files = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SafetensorsFile> _byTensor = new(StringComparer.Ordinal);

    public string Directory { get; }

    /// <summary>Bytes of tensor data read so far: as returned (float32 elements x 4 after widening; raw BF16 and FP8 as stored, with FP8's scales).</summary>
    public long BytesRead { get; private set; }

    public CheckpointReader(string directory)
    {
        Directory = directory;
        var index = System.IO.Path.Combine(directory, "model.safetensors.index.json");
        var single = System.IO.Path.Combine(directory, "model.safetensors");
        if (File.Exists(index))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            foreach (var entry in doc.RootElement.GetProperty("weight_map").EnumerateObject())
            {
                var shard = entry.Value.GetString() ?? throw new CheckpointException($"{index}: null shard for '{entry.Name}'");
                if (!_files.TryGetValue(shard, out var file))
                {
                    var shardPath = System.IO.Path.Combine(directory, shard);
                    if (!File.Exists(shardPath)) throw new CheckpointException($"{index}: shard '{shard}' for tensor '{entry.Name}' does not exist");
                    file = SafetensorsFile.Open(shardPath);
                    _files[shard] = file;
                }
                _byTensor[entry.Name] = file;
            }
        }
        else if (File.Exists(single))
        {
            var file = SafetensorsFile.Open(single);
            _files["model.safetensors"] = file;
            foreach (var name in file.Tensors.Keys) _byTensor[name] = file;
        }
        else
        {
            throw new CheckpointException($"{directory}: no model.safetensors or model.safetensors.index.json");
        }
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public IEnumerable<string> TensorNames => _byTensor.Keys;

    /// <summary>Reads a tensor as float32 values, checking its shape; FP8 weights are dequantised with their block scales.</summary>
    public float[] ReadFloat32(string name, params long[] expectedShape)
    {
        var (file, info) = Locate(name);
        if (!info.Shape.SequenceEqual(expectedShape))
            throw new CheckpointException($"tensor '{name}' has shape [{string.Join(",", info.Shape)}], expected [{string.Join(",", expectedShape)}]");
        var values = DTypes.ToFloat32(file.ReadBytes(info), info.DType);
        if (info.DType == DType.F8E4M3) Dequantise(name, values, info.Shape);
        BytesRead += values.LongLength * 4;
        return values;
    }

    /// <summary>A BF16 tensor's raw values (no widened copy), checking its shape; null when the tensor is another type.</summary>
    public ushort[]? ReadBf16(string name, params long[] expectedShape)
    {
        var (file, info) = Locate(name);
        if (!info.Shape.SequenceEqual(expectedShape))
            throw new CheckpointException($"tensor '{name}' has shape [{string.Join(",", info.Shape)}], expected [{string.Join(",", expectedShape)}]");
        if (info.DType != DType.BF16) return null;
        var bytes = file.ReadBytes(info);
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes).ToArray();
        BytesRead += bytes.LongLength;
        return values;
    }

    /// <summary>
    /// An FP8 (e4m3) weight's raw codes and its 128x128 block scales ([ceil(rows/128), ceil(cols/128)], the factor
    /// that dequantises), with no widened copy, checking the shapes; null when the tensor is another type.
    /// </summary>
    public (byte[] Codes, float[] Scales)? ReadFp8(string name, params long[] expectedShape)
    {
        var (file, info) = Locate(name);
        if (!info.Shape.SequenceEqual(expectedShape))
            throw new CheckpointException($"tensor '{name}' has shape [{string.Join(",", info.Shape)}], expected [{string.Join(",", expectedShape)}]");
        if (info.DType != DType.F8E4M3) return null;
        var codes = file.ReadBytes(info);
        var scales = ReadScales(name, info.Shape);
        BytesRead += codes.LongLength + scales.LongLength * 4;
        return (codes, scales);
    }

    /// <summary>Reads a tensor onto a device in the given floating type.</summary>
    public Tensor Read(string name, Device device, ScalarType dtype, params long[] expectedShape)
    {
        var values = ReadFloat32(name, expectedShape);
        if (device.type == DeviceType.CPU && dtype == ScalarType.Float32)
        {
            // Advised before it is written, so that its first touch maps 2 MiB pages.
            var held = torch.empty(expectedShape, ScalarType.Float32);
            Runtime.HugePages.Advise(held.storage<float>().data_ptr(), values.LongLength * 4);
            held.data<float>().CopyFrom(values);
            return held;
        }
        using var cpu = torch.tensor(values, expectedShape);
        return cpu.to(dtype, device);
    }

    private void Dequantise(string name, float[] values, long[] shape)
    {
        var scales = ReadScales(name, shape);
        var rows = (int)shape[0];
        var cols = (int)shape[1];
        var scaleCols = (cols + Fp8BlockSize - 1) / Fp8BlockSize;
        for (var r = 0; r < rows; r++)
        {
            var scaleRow = r / Fp8BlockSize * scaleCols;
            var row = values.AsSpan(r * cols, cols);
            for (var c = 0; c < cols; c++) row[c] *= scales[scaleRow + c / Fp8BlockSize];
        }
    }

    /// <summary>The block scales of FP8 weight <paramref name="name"/> of <paramref name="shape"/>, checked.</summary>
    private float[] ReadScales(string name, long[] shape)
    {
        if (shape.Length != 2) throw new CheckpointException($"FP8 tensor '{name}' must be 2-D");
        var scaleRows = (shape[0] + Fp8BlockSize - 1) / Fp8BlockSize;
        var scaleCols = (shape[1] + Fp8BlockSize - 1) / Fp8BlockSize;
        var scaleName = name + "_scale_inv";
        if (!Contains(scaleName)) throw new CheckpointException($"FP8 tensor '{name}' has no block scale '{scaleName}'");
        var (file, info) = Locate(scaleName);
        if (!info.Shape.SequenceEqual(new[] { scaleRows, scaleCols }))
            throw new CheckpointException($"tensor '{scaleName}' has shape [{string.Join(",", info.Shape)}], expected [{scaleRows},{scaleCols}]");
        return DTypes.ToFloat32(file.ReadBytes(info), info.DType);
    }

    private (SafetensorsFile File, TensorInfo Info) Locate(string name)
    {
        if (!_byTensor.TryGetValue(name, out var file) || !file.Tensors.TryGetValue(name, out var info))
            throw new CheckpointException($"tensor '{name}' is missing from the checkpoint in {Directory}");
        return (file, info);
    }

    public void Dispose()
    {
        foreach (var f in _files.Values) f.Dispose();
    }
}
