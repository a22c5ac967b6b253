namespace MoeMesh.Engine.Experts;

/// <summary>
/// Some experts of a layer have no reachable node: the tokens that chose them cannot be computed.
/// The engine ends the sequences owning <see cref="TokenRows"/> and carries on with the others.
/// </summary>
public sealed class ExpertsUnavailableException(int layer, IReadOnlyList<int> experts, IReadOnlyList<int> tokenRows, string detail)
    : Exception($"experts {string.Join(",", experts)} of layer {layer} are unavailable: no healthy expert node holds them")
{
    public int Layer { get; } = layer;
    public IReadOnlyList<int> Experts { get; } = experts;

    /// <summary>Rows of the batch whose tokens chose an unavailable expert.</summary>
    public IReadOnlyList<int> TokenRows { get; } = tokenRows;

    /// <summary>Why (the last node error): for the log, not for clients, as it names nodes and their replies.</summary>
    public string Detail { get; } = detail;

    /// <summary>The same failure with rows numbered from <paramref name="offset"/> (a micro-batch inside a larger batch).</summary>
    public ExpertsUnavailableException Shifted(int offset) => new(Layer, Experts, TokenRows.Select(r => r + offset).ToList(), Detail);
}
