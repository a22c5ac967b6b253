namespace MoeMesh.Engine.Dispatch;

/// <summary>Element type of the hidden states on the dispatch wire: the gateway's compute type.</summary>
public enum WireDType : byte
{
    Float32 = 0,
    BFloat16 = 1,
}
