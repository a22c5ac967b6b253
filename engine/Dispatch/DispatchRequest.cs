namespace MoeMesh.Engine.Dispatch;

/// <summary>
/// One layer's work for one expert node: the hidden states of the tokens routed to it and, as
/// (token, expert, weight) pairs, which of its experts each token chose. A token that chose several of
/// the node's experts is sent once, with one pair per expert.
/// </summary>
public sealed record DispatchRequest(
    string Fingerprint,
    int Layer,
    int TokenCount,
    int Hidden,
    WireDType DType,
    int[] PairTokens,
    int[] PairExperts,
    float[] PairWeights,
    ReadOnlyMemory<byte> States)
{
    public int PairCount => PairTokens.Length;

    /// <summary>Bytes of one hidden-state element.</summary>
    public static int ElementSize(WireDType dtype) => dtype == WireDType.BFloat16 ? 2 : 4;
}
