using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Gateway.Tests.Distributed;

namespace MoeMesh.Gateway.Tests.Fuzz;

/// <summary>
/// A fixed number of seeded random and mutated requests against a real gateway and a real expert node: every
/// answer is a 2xx or an OpenAI-shaped 4xx, nothing dies, and a normal request afterwards gets what it got before.
/// </summary>
public sealed class ApiFuzzTests
{
    private const int ApiCases = 400;
    private const int DispatchCases = 300;

    private static readonly object Reference = new
    {
        prompt = "The experts of a mixture", max_tokens = 6, temperature = 0, logprobs = 2, return_tokens_as_token_ids = true, ignore_eos = true,
    };

    [Fact]
    public async Task GatewayApi_AnswersEveryRequestWith2xxOrOpenAi4xx_AndServesAsBeforeAfterwards()
    {
        await using var server = await GatewayServer.StartAsync("--max-model-len", "64", "--max-request-bytes", "262144");
        var before = await server.PostJsonAsync("/v1/completions", Reference);
        var random = new Random(20261130);
        var mutator = new RequestMutator(random);
        var statuses = new Dictionary<int, int>();
        for (var i = 0; i < ApiCases; i++)
        {
            var (path, body) = mutator.Next();
            var content = new StringContent(body, Encoding.UTF8);
            content.Headers.ContentType = new MediaTypeHeaderValue(random.Next(10) == 0 ? "text/plain" : "application/json");
            using var response = await server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = content }, HttpCompletionOption.ResponseHeadersRead);
            var what = $"case {i}: POST {path} {Shorten(body)}";
            var status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            Assert.True(status < 500, $"{what} -> {status}: {await response.Content.ReadAsStringAsync()}");
            if (status >= 400)
            {
                AssertOpenAiError(await response.Content.ReadAsStringAsync(), what);
                continue;
            }
            if (response.Content.Headers.ContentType?.MediaType == "text/event-stream")
            {
                // A third of the streams lose their client part-way: the gateway must clean up after them.
                if (random.Next(3) == 0)
                {
                    var buffer = new byte[random.Next(1, 400)];
                    _ = await (await response.Content.ReadAsStreamAsync()).ReadAsync(buffer);
                    continue;
                }
                var events = await response.Content.ReadAsStringAsync();
                Assert.EndsWith("data: [DONE]", events.TrimEnd());
                Assert.DoesNotContain("server_error", events);
                continue;
            }
            Assert.Equal(JsonValueKind.Array, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices").ValueKind);
        }

        // The cases reach generation, not only the parser: a fair share are served.
        Assert.True(statuses.GetValueOrDefault(200) >= ApiCases / 5, string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}")));
        await server.WaitForMetricAsync("moemesh_requests_running", v => v == 0, "back at 0 after the fuzzing");
        Assert.Equal(0, await server.MetricAsync("moemesh_requests_waiting"));
        await server.WaitForMetricAsync("moemesh_kv_cache_usage_ratio", v => v == 0, "every page released");
        Assert.Equal("ok", (await server.GetTextAsync("/healthz")).Body);
        var after = await server.PostJsonAsync("/v1/completions", Reference);
        Completions.AssertSame(before, after);
        Assert.Equal(before.GetProperty("choices")[0].GetProperty("text").GetString(), after.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task DispatchEndpoint_RefusesEveryBadFrameWith4xx_AndComputesAsBeforeAfterwards()
    {
        var dir = GatewayServer.ModelDir;
        await using var node = await ExpertNodeProcess.StartAsync(dir, "0-7", 0, "--max-dispatch-tokens", "256");
        using var http = new HttpClient { BaseAddress = node.Address };
        var valid = DispatchCodec.Encode(DispatchRefusalTests.Valid());
        var before = await (await DispatchRefusalTests.PostAsync(http, valid)).Content.ReadAsByteArrayAsync();
        var random = new Random(1130);
        var served = 0;
        int[] interesting = [0, 1, -1, 2, 3, 16, 255, 256, 257, 1 << 20, int.MaxValue, int.MinValue, ModelConfig.Load(Path.Combine(dir, "config.json")).HiddenSize];
        for (var i = 0; i < DispatchCases; i++)
        {
            var frame = valid.ToArray();
            switch (random.Next(5))
            {
                case 0:
                    for (var f = 0; f < 1 + random.Next(8); f++) frame[random.Next(frame.Length)] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    // A header field (layer, tokens, hidden, pairs) set to an edge value.
                    BitConverter.TryWriteBytes(frame.AsSpan(20 + 4 * random.Next(4)), interesting[random.Next(interesting.Length)]);
                    break;
                case 2:
                    frame = frame[..random.Next(frame.Length)];
                    break;
                case 3:
                    frame = [.. frame, .. Enumerable.Range(0, random.Next(1, 64)).Select(_ => (byte)random.Next(256))];
                    break;
                default:
                    frame = new byte[random.Next(0, 200)];
                    random.NextBytes(frame);
                    break;
            }
            using var response = await DispatchRefusalTests.PostAsync(http, frame);
            var status = (int)response.StatusCode;
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(status == 200 || status is >= 400 and < 500, $"frame case {i} -> {status}: {text}");
            if (status != 200) Assert.False(string.IsNullOrEmpty(JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString()));
            else served++;
        }
        // Some mutated frames are still valid (a flipped weight or state bit): the compute path is fuzzed too.
        Assert.True(served > 0, "no frame was served");
        Assert.True((await http.GetAsync("/readyz")).IsSuccessStatusCode);
        Assert.Equal(before, await (await DispatchRefusalTests.PostAsync(http, valid)).Content.ReadAsByteArrayAsync());
    }

    private static void AssertOpenAiError(string text, string what)
    {
        JsonElement error;
        try
        {
            error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            Assert.Fail($"{what}: not an OpenAI-shaped error: {text}");
            return;
        }
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()), what);
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()), what);
        Assert.True(error.TryGetProperty("param", out _) && error.TryGetProperty("code", out _), $"{what}: {text}");
        Assert.DoesNotContain("   at ", text);
    }

    private static string Shorten(string body) => body.Length <= 300 ? body : body[..300] + $"... ({body.Length} chars)";
}
