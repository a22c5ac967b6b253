namespace MoeMesh.Engine.Experts;

/// <summary>
/// Where a remote expert backend sends its work: picks a healthy node holding an expert and carries
/// one dispatch message to it. The gateway implements it over its routing table and health state.
/// </summary>
public interface IExpertRouter
{
    /// <summary>Model fingerprint the messages carry.</summary>
    string Fingerprint { get; }

    /// <summary>
    /// A healthy node holding <paramref name="expert"/> of <paramref name="layer"/> with the least work, counting
    /// the pairs <paramref name="planned"/> per node by the current plan; null if none outside <paramref name="excluded"/>.
    /// </summary>
    string? Pick(int layer, int expert, IReadOnlySet<string> excluded, IReadOnlyDictionary<string, int> planned);

    /// <summary>Sends a dispatch message and returns the reply body; throws <see cref="ExpertNodeException"/> on failure or deadline.</summary>
    Task<byte[]> SendAsync(string node, int layer, byte[] message);
}
