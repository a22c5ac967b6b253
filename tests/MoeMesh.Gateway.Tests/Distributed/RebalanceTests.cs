using System.Collections.Concurrent;
using System.Text.Json;
using MoeMesh.Engine.Config;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Placement;
using Xunit.Abstractions;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>
/// The placement loop end to end on loopback, without Kubernetes: real expert nodes on the operator's uniform
/// placement, the load the gateway measures, the planner's rebalanced placement rolled out make-before-break
/// through the nodes' placement files while requests stream. No request fails, every answer equals the
/// in-process one, and the load per node evens out.
/// </summary>
public sealed class RebalanceTests(ITestOutputHelper output)
{
    private static readonly string[] Prompts = ["The experts of a mixture", "Once upon a time", "def main():", "1, 2, 3, 4,"];

    [Fact]
    public async Task PlannedPlacement_RolledOutMakeBeforeBreak_WhileServing_EvensTheLoad()
    {
        var dir = GatewayServer.ModelDir;
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        var moeLayers = Enumerable.Range(0, config.NumHiddenLayers).Where(config.IsMoeLayer).ToArray();
        var expected = new Dictionary<string, JsonElement>();
        foreach (var p in Prompts) expected[p] = await GatewayServer.InProcessJsonAsync(dir, "/v1/completions", DistributedGenerationTests.Request(6, p));

        // A stale placement: the first node holds most experts (as if the load had moved since it was planned).
        const int nodes = 3;
        var e = config.NRoutedExperts;
        var uniform = new PlacementPlan(new[] { Enumerable.Range(0, e - 6), Enumerable.Range(e - 6, 3), Enumerable.Range(e - 3, 3) }
            .Select(set => (IReadOnlyDictionary<string, string>)new Dictionary<string, string> { ["*"] = string.Join(",", set) }).ToArray());
        var files = Enumerable.Range(0, nodes).Select(_ => Path.Combine(Path.GetTempPath(), $"moemesh-rebalance-{Guid.NewGuid():N}.json")).ToArray();
        for (var i = 0; i < nodes; i++) await File.WriteAllTextAsync(files[i], uniform.Document(i, 1));
        var started = new List<ExpertNodeProcess>();
        try
        {
            for (var i = 0; i < nodes; i++) started.Add(await ExpertNodeProcess.StartAsync(dir, "all", 0, "--placement", files[i], "--drain-seconds", "2"));
            await using var gateway = await GatewayServer.StartWithNodesAsync(dir, started);

            // Measure: the gateway's routed load per layer and expert, and each node's share of the work.
            var before = await NodeTokensAsync(started);
            await RunAsync(gateway, expected);
            var measured = Delta(await NodeTokensAsync(started), before);
            var report = JsonDocument.Parse(await gateway.Http.GetStringAsync("/metrics/expert-load")).RootElement;
            var load = report.GetProperty("layers").EnumerateArray().ToDictionary(l => l.GetProperty("layer").GetInt32(),
                l => (IReadOnlyList<double>)l.GetProperty("tokens").EnumerateArray().Select(t => (double)t.GetInt64()).ToArray());

            // Plan from the placement in force, within the nodes' slots (two spare per node).
            var current = ModelPlacement.Resolve(uniform, moeLayers, config.NRoutedExperts);
            var shape = new PlannerShape(nodes, e - 6, 1);
            var target = new ModelPlacement(moeLayers.ToDictionary(l => l, l => ExpertPlanner.Rebalance(load[l], current.Layers[l], shape, new MigrationBudget(100, 1.0, 0))));
            Assert.True(current.MovesTo(target) > 0, "the planner found nothing to improve");

            // Roll out while requests stream: each phase is written, then awaited on every node and in the gateway's routing.
            using var stop = new CancellationTokenSource();
            var answers = new ConcurrentQueue<(string Prompt, JsonElement Answer)>();
            var traffic = Task.Run(async () =>
            {
                for (var k = 0; !stop.IsCancellationRequested; k++)
                {
                    var prompt = Prompts[k % Prompts.Length];
                    answers.Enqueue((prompt, await gateway.PostJsonAsync("/v1/completions", DistributedGenerationTests.Request(6, prompt))));
                }
            });
            var generation = 1L;
            foreach (var phase in Rollout.Phases(current, target))
            {
                generation++;
                var plan = phase.ToPlan();
                for (var i = 0; i < nodes; i++) await File.WriteAllTextAsync(files[i], plan.Document(i, generation));
                await WaitForGenerationAsync(gateway, started, generation);
                var served = answers.Count;
                await Eventually.HoldsAsync(() => Task.FromResult(answers.Count > served), $"a request served on generation {generation}");
            }
            await stop.CancelAsync();
            await traffic;
            Assert.All(answers, a => Completions.AssertSame(expected[a.Prompt], a.Answer));

            // The same work again, on the new placement: the busiest node carries less above the mean.
            before = await NodeTokensAsync(started);
            await RunAsync(gateway, expected);
            var after = Delta(await NodeTokensAsync(started), before);
            output.WriteLine($"tokens per node before {string.Join("/", measured)} (max/mean {Imbalance(measured):0.000}), " +
                $"after {string.Join("/", after)} (max/mean {Imbalance(after):0.000}); {current.MovesTo(target)} expert copies moved, {answers.Count} requests during the roll-out");
            Assert.True(Imbalance(measured) > 1.5, $"the stale placement is not unbalanced: max/mean {Imbalance(measured):0.000}");
            Assert.True(Imbalance(after) < 1.25, $"max/mean {Imbalance(measured):0.000} before, {Imbalance(after):0.000} after");
        }
        finally
        {
            foreach (var n in started) await n.DisposeAsync();
            foreach (var f in files) File.Delete(f);
        }
    }

    private static async Task RunAsync(GatewayServer gateway, Dictionary<string, JsonElement> expected)
    {
        for (var round = 0; round < 3; round++)
            foreach (var p in Prompts)
                Completions.AssertSame(expected[p], await gateway.PostJsonAsync("/v1/completions", DistributedGenerationTests.Request(6, p)));
    }

    private static async Task WaitForGenerationAsync(GatewayServer gateway, IEnumerable<ExpertNodeProcess> nodes, long generation)
    {
        foreach (var node in nodes)
        {
            using var http = new HttpClient { BaseAddress = node.Address };
            await Eventually.HoldsAsync(async () => JsonDocument.Parse(await http.GetStringAsync("/v1/experts")).RootElement.GetProperty("placement"),
                p => p.GetProperty("generation").ValueKind == JsonValueKind.Number && p.GetProperty("generation").GetInt64() == generation
                     && p.GetProperty("state").GetString() is "Steady" or "Draining" or "WaitingForDispatches",
                $"node {node.Address} advertises generation {generation}");
        }
        await Eventually.HoldsAsync(async () => JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/routing")).RootElement.GetProperty("nodes").EnumerateArray()
                .All(n => n.GetProperty("placement_generation").ValueKind == JsonValueKind.Number && n.GetProperty("placement_generation").GetInt64() == generation),
            $"the gateway routes by generation {generation}");
    }

    /// <summary>Tokens each node computed so far (its moemesh_expert_tokens_total over all layers and experts).</summary>
    private static async Task<long[]> NodeTokensAsync(IEnumerable<ExpertNodeProcess> nodes)
    {
        var totals = new List<long>();
        foreach (var node in nodes)
        {
            using var http = new HttpClient { BaseAddress = node.Address };
            var text = await http.GetStringAsync("/metrics");
            totals.Add(text.Split('\n').Where(l => l.StartsWith("moemesh_expert_tokens_total{", StringComparison.Ordinal))
                .Sum(l => (long)double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)));
        }
        return totals.ToArray();
    }

    private static long[] Delta(long[] now, long[] before) => now.Select((v, i) => v - before[i]).ToArray();

    private static double Imbalance(long[] perNode) => perNode.Max() / perNode.Average();
}
