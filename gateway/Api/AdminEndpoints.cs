using System.Text.Json;
using MoeMesh.Gateway.Routing;

namespace MoeMesh.Gateway.Api;

/// <summary>Operator routes of the expert tier: the routing table and changing the node set while serving.</summary>
public static class AdminEndpoints
{
    /// <summary>Expert nodes one gateway routes to, at most.</summary>
    public const int MaxNodes = 1024;

    public static void MapExpertAdmin(this WebApplication app, ExpertTier tier)
    {
        app.MapGet("/admin/routing", () => Results.Json(tier.Describe()));
        app.MapPut("/admin/nodes", (HttpContext ctx) => Endpoints.Guard(ctx, () => SetNodesAsync(ctx, tier)));
    }

    /// <summary>PUT /admin/nodes {"nodes": ["http://host:port", ...]}: nodes join and leave; replies with the routing table.</summary>
    private static async Task SetNodesAsync(HttpContext ctx, ExpertTier tier)
    {
        var r = await RequestReader.ParseAsync(ctx.Request, ctx.RequestAborted);
        if (r.Get("nodes") is not { ValueKind: JsonValueKind.Array } list || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw ApiException.BadRequest("'nodes' must be a list of expert-node URLs", "nodes");
        if (list.GetArrayLength() > MaxNodes) throw ApiException.BadRequest($"'nodes' holds at most {MaxNodes} URLs", "nodes");
        IReadOnlyList<Uri> addresses;
        try
        {
            addresses = ExpertNode.ParseAddresses(list.EnumerateArray().Select(e => e.GetString()!));
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message, "nodes");
        }
        await tier.Directory.SetNodesAsync(addresses, ctx.RequestAborted);
        await Results.Json(tier.Describe()).ExecuteAsync(ctx);
    }
}
