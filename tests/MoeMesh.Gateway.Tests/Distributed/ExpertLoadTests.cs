using System.Net;
using System.Text.Json;
using MoeMesh.Engine.Config;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>The routed load a gateway reports for the placement planner, checked against what the nodes computed.</summary>
public sealed class ExpertLoadTests
{
    [Fact]
    public async Task GatewayLoad_EqualsTheTokensTheNodesComputed_PerLayerAndExpert()
    {
        var dir = GatewayServer.ModelDir;
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        await using var low = await ExpertNodeProcess.StartAsync(dir, $"0-{config.NRoutedExperts / 2 - 1}");
        await using var high = await ExpertNodeProcess.StartAsync(dir, $"{config.NRoutedExperts / 2}-{config.NRoutedExperts - 1}");
        await using var gateway = await GatewayServer.StartWithNodesAsync(dir, [low, high]);
        await gateway.PostJsonAsync("/v1/completions", DistributedGenerationTests.Request(6, "The experts of a mixture", "Once upon a time"));

        var report = JsonDocument.Parse(await gateway.Http.GetStringAsync("/metrics/expert-load")).RootElement;
        Assert.Equal(60, report.GetProperty("window_seconds").GetDouble());
        var layers = report.GetProperty("layers").EnumerateArray().ToArray();
        Assert.Equal(Enumerable.Range(0, config.NumHiddenLayers).Where(config.IsMoeLayer), layers.Select(l => l.GetProperty("layer").GetInt32()));
        var nodes = new List<string>();
        foreach (var node in new[] { low, high })
        {
            using var http = new HttpClient { BaseAddress = node.Address };
            nodes.Add(await http.GetStringAsync("/metrics"));
        }
        foreach (var l in layers)
        {
            var layer = l.GetProperty("layer").GetInt32();
            var tokens = l.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt64()).ToArray();
            Assert.True(tokens.Sum() > 0 && tokens.Sum() % config.NumExpertsPerTok == 0, $"layer {layer}: {tokens.Sum()} routed tokens");
            for (var e = 0; e < tokens.Length; e++)
                Assert.Equal(NodeCount(nodes, layer, e), tokens[e]);
        }
    }

    [Fact]
    public async Task InProcessExperts_HaveNoRoutedLoadToReport()
    {
        await using var gateway = await GatewayServer.StartAsync();
        var response = await gateway.Http.GetAsync("/metrics/expert-load");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("no_expert_tier", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    /// <summary>moemesh_expert_tokens_total{layer,expert} summed over the nodes' /metrics texts.</summary>
    private static long NodeCount(IEnumerable<string> metrics, int layer, int expert)
    {
        var series = $"moemesh_expert_tokens_total{{layer=\"{layer}\",expert=\"{expert}\"}} ";
        return metrics.SelectMany(m => m.Split('\n')).Where(line => line.StartsWith(series, StringComparison.Ordinal))
            .Sum(line => (long)double.Parse(line[series.Length..], System.Globalization.CultureInfo.InvariantCulture));
    }
}
