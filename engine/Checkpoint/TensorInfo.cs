namespace MoeMesh.Engine.Checkpoint;

/// <summary>Where one tensor lies in a safetensors file's data section.</summary>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}
