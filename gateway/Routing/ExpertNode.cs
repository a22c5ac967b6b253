namespace MoeMesh.Gateway.Routing;

/// <summary>One configured expert node: its YARP destination id and base address.</summary>
public sealed record ExpertNode(string Id, Uri Address)
{
    /// <summary>Checks and normalises node base URLs: http(s), scheme, host and port only, no credentials.</summary>
    public static IReadOnlyList<Uri> ParseAddresses(IEnumerable<string> urls)
    {
        var addresses = new List<Uri>();
        foreach (var part in urls.Select(u => u.Trim()).Where(u => u.Length > 0))
        {
            if (!Uri.TryCreate(part, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https") || uri.Host.Length == 0)
                throw new ArgumentException($"expert nodes: '{part}' is not an http(s) URL");
            var address = new Uri($"{uri.Scheme}://{uri.Authority}/");
            // Credentials travel as --expert-api-key, never inside an address (which is logged and shown in /admin/routing).
            if (uri.UserInfo.Length > 0) throw new ArgumentException($"expert nodes: {address} carries credentials in the URL; give the nodes' key with --expert-api-key");
            if (uri.AbsolutePath != "/" || uri.Query.Length > 0 || uri.Fragment.Length > 0)
                throw new ArgumentException($"expert nodes: '{part}' must be a base URL (scheme, host and port only)");
            if (!addresses.Contains(address)) addresses.Add(address);
        }
        if (addresses.Count == 0) throw new ArgumentException("expert nodes: no URL given");
        return addresses;
    }

    /// <summary>
    /// The node list for <paramref name="addresses"/>: an address already known keeps its id (so its
    /// health and admin route carry over), a new one gets the next unused node-N.
    /// </summary>
    public static IReadOnlyList<ExpertNode> Reconcile(IReadOnlyList<ExpertNode> current, IReadOnlyList<Uri> addresses)
    {
        var next = current.Select(n => int.Parse(n.Id["node-".Length..])).DefaultIfEmpty(-1).Max() + 1;
        return addresses.Select(a => current.FirstOrDefault(n => n.Address == a) ?? new ExpertNode($"node-{next++}", a)).ToList();
    }
}
