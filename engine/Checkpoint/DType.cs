namespace MoeMesh.Engine.Checkpoint;

/// <summary>Element types of safetensors files that the engine reads.</summary>
public enum DType
{
    F32,
    F16,
    BF16,
    F8E4M3,
}
