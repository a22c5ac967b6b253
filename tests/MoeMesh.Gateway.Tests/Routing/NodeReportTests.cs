using System.Net;
using System.Text.Json;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Gateway.Tests.Distributed;

namespace MoeMesh.Gateway.Tests.Routing;

/// <summary>What a gateway does with expert-node holdings reports it cannot trust, and with nodes that redirect.</summary>
public sealed class NodeReportTests
{
    private static readonly string Dir = GatewayServer.ModelDir;

    private static string Report(string layers) => $$"""{"model_fingerprint":"{{ModelFingerprint.Of(Dir)}}","ready":true,"layers":{{layers}}}""";

    public static TheoryData<string, string> MalformedReports() => new()
    {
        { "no layer list", Report("null") },
        { "a null layer", Report("[null]") },
        { "a layer twice", Report("""[{"layer":1,"experts":[0,1]},{"layer":1,"experts":[2]}]""") },
        { "an expert outside the model", Report("""[{"layer":1,"experts":[0,99]}]""") },
        { "a dense layer", Report("""[{"layer":0,"experts":[0]}]""") },
        { "an expert twice", Report("""[{"layer":1,"experts":[3,3]}]""") },
        { "no expert list", Report("""[{"layer":1,"experts":null}]""") },
        { "wrong types", """{"model_fingerprint":5,"ready":"yes","layers":{}}""" },
        { "JSON null", "null" },
        { "not JSON", "<html>oops</html>" },
    };

    [Theory]
    [MemberData(nameof(MalformedReports))]
    public async Task MalformedReport_IsRefusedAndShown_TheGatewayKeepsServingAndPolling(string why, string report)
    {
        var request = DistributedGenerationTests.Request(4, "The experts of a mixture");
        var expected = await GatewayServer.InProcessJsonAsync(Dir, "/v1/completions", request);
        await using var real = await ExpertNodeProcess.StartAsync(Dir, "all");
        await using var fake = await FakeExpertNode.StartAsync();
        fake.ReportJson(report);
        await using var gateway = await GatewayServer.StartForAsync(Dir, "--expert-nodes", $"{real.Address},{fake.Address}");
        await gateway.WaitReadyAsync();
        var fakeNode = await Eventually.HoldsAsync(async () => Node(await gateway.Admin.GetStringAsync("/admin/routing"), "node-1"),
            n => n.GetProperty("error").ValueKind == JsonValueKind.String, $"{why}: the refusal shown in /admin/routing");
        Assert.Empty(fakeNode.GetProperty("layers").EnumerateArray());

        Completions.AssertSame(expected, await gateway.PostJsonAsync("/v1/completions", request));
        Assert.Equal(HttpStatusCode.OK, (await gateway.GetTextAsync("/readyz")).Status);
        // The poller is alive: once the report is sound the node's holdings appear.
        fake.ReportJson(Report("""[{"layer":1,"experts":[0,1]},{"layer":2,"experts":[5]}]"""));
        await Eventually.HoldsAsync(async () => Node(await gateway.Admin.GetStringAsync("/admin/routing"), "node-1"),
            n => n.GetProperty("layers").GetArrayLength() == 2 && n.GetProperty("error").ValueKind == JsonValueKind.Null, "the sound report taken");
    }

    [Fact]
    public async Task NodeThatRedirects_NeverGetsTheKeyOnElsewhere()
    {
        await using var elsewhere = await FakeExpertNode.StartAsync();
        await using var redirecting = await FakeExpertNode.StartAsync();
        redirecting.Experts = ctx =>
        {
            ctx.Response.StatusCode = 307;
            ctx.Response.Headers.Location = new Uri(elsewhere.Address, "v1/experts").ToString();
            return Task.CompletedTask;
        };
        await using var gateway = await GatewayServer.StartAsync("--expert-nodes", redirecting.Address.ToString(), "--expert-api-key", "node-key");
        await Eventually.HoldsAsync(async () => Node(await gateway.Admin.GetStringAsync("/admin/routing"), "node-0"),
            n => n.GetProperty("error").ValueKind == JsonValueKind.String, "the redirect reported as an error");
        Assert.Contains(redirecting.Seen, r => r.Path == "/v1/experts" && r.Authorization == "Bearer node-key");
        Assert.DoesNotContain(elsewhere.Seen, r => r.Path == "/v1/experts");
    }

    private static JsonElement Node(string routing, string id) =>
        JsonDocument.Parse(routing).RootElement.GetProperty("nodes").EnumerateArray().First(n => n.GetProperty("id").GetString() == id);
}
