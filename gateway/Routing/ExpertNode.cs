namespace MoeMesh.Gateway.Routing;

/// <summary>One configured expert node: its YARP destination id and base address.</summary>
public sealed record ExpertNode(string Id, Uri Address)
{
    /// <summary>Parses --expert-nodes: comma-separated http(s) URLs, named node-0, node-1, ... in order.</summary>
    public static IReadOnlyList<ExpertNode> ParseList(string spec)
    {
        var nodes = new List<ExpertNode>();
        foreach (var part in spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!Uri.TryCreate(part, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
                throw new ArgumentException($"--expert-nodes: '{part}' is not an http(s) URL");
            nodes.Add(new ExpertNode($"node-{nodes.Count}", new Uri(uri.GetLeftPart(UriPartial.Authority) + "/")));
        }
        if (nodes.Count == 0) throw new ArgumentException("--expert-nodes: no URL given");
        return nodes;
    }
}
