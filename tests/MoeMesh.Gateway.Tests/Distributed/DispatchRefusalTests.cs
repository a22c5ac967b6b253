using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Dispatch;

namespace MoeMesh.Gateway.Tests.Distributed;

/// <summary>Dispatch messages an expert node must refuse, each with a code the gateway can act on, while it keeps serving.</summary>
public sealed class DispatchRefusalTests
{
    private static readonly string Dir = GatewayServer.ModelDir;

    internal static DispatchRequest Valid(int layer = 1, int expert = 3, string? fingerprint = null)
    {
        var hidden = ModelConfig.Load(Path.Combine(Dir, "config.json")).HiddenSize;
        var states = new float[2 * hidden];
        for (var i = 0; i < states.Length; i++) states[i] = MathF.Sin(i);
        return new DispatchRequest(fingerprint ?? ModelFingerprint.Of(Dir), layer, 2, hidden, WireDType.Float32,
            [0, 1, 1], [expert, expert, 5], [0.5f, 0.25f, 0.75f], System.Runtime.InteropServices.MemoryMarshal.AsBytes(states.AsSpan()).ToArray());
    }

    internal static async Task<HttpResponseMessage> PostAsync(HttpClient http, byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue(DispatchCodec.ContentType);
        return await http.PostAsync("/v1/dispatch", content);
    }

    [Fact]
    public async Task BadMessages_AreRefusedWithActionableCodes_AndTheNodeKeepsServing()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "0-7");
        using var http = new HttpClient { BaseAddress = node.Address };
        var valid = DispatchCodec.Encode(Valid());
        var cases = new (string Why, byte[] Body, HttpStatusCode Status, string Code)[]
        {
            ("garbage", "not a tensor"u8.ToArray(), HttpStatusCode.BadRequest, "malformed_dispatch"),
            ("truncated", valid[..^4], HttpStatusCode.BadRequest, "malformed_dispatch"),
            ("another model", DispatchCodec.Encode(Valid(fingerprint: "0123456789abcdef")), HttpStatusCode.Conflict, "model_mismatch"),
            ("expert not held", DispatchCodec.Encode(Valid(expert: 9)), HttpStatusCode.MisdirectedRequest, "expert_not_held"),
            ("dense layer", DispatchCodec.Encode(Valid(layer: 0)), HttpStatusCode.MisdirectedRequest, "expert_not_held"),
        };
        foreach (var (why, body, status, code) in cases)
        {
            var response = await PostAsync(http, body);
            Assert.True(status == response.StatusCode, $"{why}: {(int)response.StatusCode}");
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal(code, error.GetProperty("code").GetString());
        }

        var ok = await PostAsync(http, valid);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        var reply = await ok.Content.ReadAsByteArrayAsync();
        Assert.Equal(2 * Valid().Hidden * sizeof(float), reply.Length);
        Assert.Contains(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(reply).ToArray(), v => v != 0);
        var metrics = await http.GetStringAsync("/metrics");
        Assert.Contains("moemesh_expert_dispatch_rejected_total{code=\"model_mismatch\"} 1", metrics);
        Assert.Contains("moemesh_expert_tokens_total{layer=\"1\",expert=\"3\"} 2", metrics);
    }

    [Fact]
    public async Task BodyLargerThanTheModelAllows_Is413AtOnce_BeforeItArrives()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "0-7", 0, "--max-dispatch-tokens", "64");
        var config = ModelConfig.Load(Path.Combine(Dir, "config.json"));
        var limit = DispatchCodec.MaxMessageBytes(64, config.NumExpertsPerTok, config.HiddenSize);
        // Only the headers are sent: the node must answer without waiting for (or allocating) the announced body.
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(node.Address.Host, node.Address.Port);
        var stream = tcp.GetStream();
        var head = $"POST /v1/dispatch HTTP/1.1\r\nHost: {node.Address.Authority}\r\nContent-Type: {DispatchCodec.ContentType}\r\nContent-Length: {limit + 1}\r\n\r\n";
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(head));
        var status = await new StreamReader(stream).ReadLineAsync().WaitAsync(Eventually.DefaultTimeout);
        Assert.StartsWith("HTTP/1.1 413", status);

        using var http = new HttpClient { BaseAddress = node.Address };
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(http, DispatchCodec.Encode(Valid()))).StatusCode);
        Assert.Contains("moemesh_expert_dispatch_rejected_total{code=\"dispatch_too_large\"} 1", await http.GetStringAsync("/metrics"));
    }

    [Fact]
    public void Codec_RefusesPairsThatNameMissingTokens()
    {
        var r = Valid() with { PairTokens = [0, 2, 1] };
        var e = Assert.Throws<DispatchFormatException>(() => DispatchCodec.Decode(DispatchCodec.Encode(r)));
        Assert.Contains("token 2", e.Message);
        var roundTrip = DispatchCodec.Decode(DispatchCodec.Encode(Valid()));
        Assert.Equal(Valid().PairExperts, roundTrip.PairExperts);
        Assert.Equal(Valid().States.ToArray(), roundTrip.States.ToArray());
    }

    [Fact]
    public async Task Gateway_ProxiesEachNodesExpertsAndMetrics_UnderTheAdminPath()
    {
        await using var node = await ExpertNodeProcess.StartAsync(Dir, "2-5");
        await using var gateway = await GatewayServer.StartAsync("--expert-nodes", node.Address.ToString());
        var experts = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/nodes/node-0/v1/experts")).RootElement;
        Assert.Equal([2, 3, 4, 5], experts.GetProperty("layers")[0].GetProperty("experts").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Contains("moemesh_expert_weight_bytes", await gateway.Admin.GetStringAsync("/admin/nodes/node-0/metrics"));
        Assert.Equal(HttpStatusCode.NotFound, (await gateway.Admin.GetAsync("/admin/nodes/node-7/metrics")).StatusCode);
    }
}
