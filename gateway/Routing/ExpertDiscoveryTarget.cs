using System.Text.RegularExpressions;

namespace MoeMesh.Gateway.Routing;

/// <summary>--expert-discovery k8s://NAMESPACE/SERVICE: the Service whose EndpointSlices list the expert nodes.</summary>
public sealed partial record ExpertDiscoveryTarget(string Namespace, string Service)
{
    public static ExpertDiscoveryTarget Parse(string text)
    {
        var m = Pattern().Match(text);
        if (!m.Success) throw new FormatException("expected k8s://NAMESPACE/SERVICE with DNS-label names");
        return new ExpertDiscoveryTarget(m.Groups[1].Value, m.Groups[3].Value);
    }

    public override string ToString() => $"k8s://{Namespace}/{Service}";

    [GeneratedRegex("^k8s://([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")]
    private static partial Regex Pattern();
}
