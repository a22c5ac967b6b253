using Microsoft.AspNetCore.Http;
using MoeMesh.Gateway.Routing;
using Yarp.ReverseProxy.Model;

namespace MoeMesh.Gateway.Tests.Routing;

public sealed class RoutingTests
{
    private static IReadOnlyDictionary<int, IReadOnlyList<int>> Layers(params (int Layer, int[] Experts)[] layers) =>
        layers.ToDictionary(l => l.Layer, l => (IReadOnlyList<int>)l.Experts);

    [Fact]
    public void RoutingTable_ListsHoldersPerExpert_AndWhatNoAvailableNodeCovers()
    {
        var table = new ExpertRoutingTable(new Dictionary<string, IReadOnlyDictionary<int, IReadOnlyList<int>>>
        {
            ["node-1"] = Layers((1, [0, 1]), (2, [0])),
            ["node-0"] = Layers((1, [1, 2]), (2, [1, 2])),
        });
        Assert.Equal(["node-0", "node-1"], table.Holders(1, 1));
        Assert.Empty(table.Holders(2, 3));
        Assert.Empty(table.Uncovered([1, 2], 3, new HashSet<string> { "node-0", "node-1" }));
        // node-0 down: expert 2 of layers 1 and 2 and expert 1 of layer 2 lose their only holder.
        Assert.Equal([(1, 2), (2, 1), (2, 2)], table.Uncovered([1, 2], 3, new HashSet<string> { "node-1" }));
    }

    [Fact]
    public void Reconcile_KeepsIdsOfKnownAddresses_AndNumbersNewOnesAfterTheHighest()
    {
        var first = ExpertNode.Reconcile([], ExpertNode.ParseAddresses(["http://a:1", " http://b:2/"]));
        Assert.Equal(["node-0", "node-1"], first.Select(n => n.Id));
        Assert.Equal(new Uri("http://b:2/"), first[1].Address);
        var next = ExpertNode.Reconcile(first, ExpertNode.ParseAddresses(["http://c:3", "http://b:2"]));
        Assert.Equal([("node-2", "http://c:3/"), ("node-1", "http://b:2/")], next.Select(n => (n.Id, n.Address.ToString())));
    }

    [Theory]
    [InlineData("ftp://a:1", "not an http(s) URL")]
    [InlineData(" ", "no URL given")]
    [InlineData("http://b:2/some/path", "base URL")]
    [InlineData("http://b:2/?x=1", "base URL")]
    [InlineData("http://user:hunter2@b:2", "credentials")]
    public void NodeAddresses_AreBaseUrlsWithoutCredentials(string url, string why)
    {
        var e = Assert.Throws<ArgumentException>(() => ExpertNode.ParseAddresses([url]));
        Assert.Contains(why, e.Message);
        Assert.DoesNotContain("hunter2", e.Message);
    }

    [Fact]
    public void LeastOutstandingWork_CountsInFlightDispatchesAndThePlan()
    {
        var policy = new LeastOutstandingWorkPolicy();
        var a = new DestinationState("node-0") { ConcurrentRequestCount = 1 };
        var b = new DestinationState("node-1");
        var context = new DefaultHttpContext();
        Assert.Same(b, policy.PickDestination(context, null!, [a, b]));
        // The plan already gave node-1 two pairs: node-0's one dispatch in flight is less work.
        context.Items[LeastOutstandingWorkPolicy.PlannedWork] = new Dictionary<string, int> { ["node-1"] = 2 };
        Assert.Same(a, policy.PickDestination(context, null!, [a, b]));
        Assert.Null(policy.PickDestination(context, null!, []));
    }
}
