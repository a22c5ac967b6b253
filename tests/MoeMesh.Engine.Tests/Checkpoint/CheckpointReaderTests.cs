using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Tests.Checkpoint;

public sealed class CheckpointReaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("moemesh-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void WriteSingle(params SafetensorsWriter.Entry[] entries) =>
        SafetensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), entries);

    private static SafetensorsWriter.Entry F32(string name, long[] shape, params float[] values) =>
        new(name, DType.F32, shape, SafetensorsWriter.Float32Bytes(values));

    [Fact]
    public void Bf16AndF16_WidenExactly()
    {
        float[] values = [1.5f, -2.25f, 0.0078125f, 24576f];
        WriteSingle(
            new SafetensorsWriter.Entry("b", DType.BF16, [4], SafetensorsWriter.BFloat16Bytes(values)),
            new SafetensorsWriter.Entry("h", DType.F16, [4], values.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray()));
        using var r = new CheckpointReader(_dir);
        Assert.Equal(values, r.ReadFloat32("b", 4));
        Assert.Equal(values, r.ReadFloat32("h", 4));
    }

    [Fact]
    public void ShardedCheckpoint_ReadsEachTensorFromItsShard()
    {
        SafetensorsWriter.Write(Path.Combine(_dir, "a.safetensors"), [F32("x", [2], 1, 2)]);
        SafetensorsWriter.Write(Path.Combine(_dir, "b.safetensors"), [F32("y", [1], 3)]);
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"), """{"metadata":{},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}}""");
        using var r = new CheckpointReader(_dir);
        Assert.Equal([1f, 2f], r.ReadFloat32("x", 2));
        Assert.Equal([3f], r.ReadFloat32("y", 1));
    }

    [Fact]
    public void MissingTensor_NamesIt()
    {
        WriteSingle(F32("x", [1], 1));
        using var r = new CheckpointReader(_dir);
        Assert.Contains("'model.norm.weight'", Assert.Throws<CheckpointException>(() => r.ReadFloat32("model.norm.weight", 1)).Message);
    }

    [Fact]
    public void ShapeMismatch_NamesTheTensorAndBothShapes()
    {
        WriteSingle(F32("w", [2, 2], 1, 2, 3, 4));
        using var r = new CheckpointReader(_dir);
        var e = Assert.Throws<CheckpointException>(() => r.ReadFloat32("w", 4, 1));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("[2,2]", e.Message);
        Assert.Contains("[4,1]", e.Message);
    }

    [Fact]
    public void TruncatedFile_NamesTheTensorThatDoesNotFit()
    {
        WriteSingle(F32("first", [2], 1, 2), F32("last", [4], 1, 2, 3, 4));
        var path = Path.Combine(_dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^6]);
        var e = Assert.Throws<CheckpointException>(() => new CheckpointReader(_dir));
        Assert.Contains("'last'", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Fp8Weight_IsDequantisedWithItsBlockScales()
    {
        // 2x130 weight: two column blocks with different scales.
        var codes = new byte[260];
        codes[0] = 0x38;   // 1.0
        codes[129] = 0x40; // 2.0
        codes[130 + 128] = 0xB8; // -1.0
        WriteSingle(
            new SafetensorsWriter.Entry("w.weight", DType.F8E4M3, [2, 130], codes),
            F32("w.weight_scale_inv", [1, 2], 0.5f, 3f));
        using var r = new CheckpointReader(_dir);
        var w = r.ReadFloat32("w.weight", 2, 130);
        Assert.Equal(0.5f, w[0]);
        Assert.Equal(6f, w[129]);
        Assert.Equal(-3f, w[130 + 128]);
        Assert.Equal(0f, w[1]);
    }
}
