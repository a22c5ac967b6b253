using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MoeMesh.Gateway.Tests.Routing;

namespace MoeMesh.Gateway.Tests.Hosting;

/// <summary>The inference key opens /v1 only, the admin key /admin only; without an admin key the admin routes do not exist.</summary>
public sealed class KeyTests
{
    private static HttpRequestMessage Get(string path, string? key) =>
        new(HttpMethod.Get, path) { Headers = { Authorization = key is null ? null : new("Bearer", key) } };

    [Fact]
    public async Task InferenceKey_IsRequiredOnV1Routes()
    {
        await using var server = await GatewayServer.StartAsync("--api-key", "sekret");
        var denied = await server.PostAsync("/v1/completions", new { prompt = "Hi", max_tokens = 1 });
        Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
        Assert.Equal("invalid_api_key", JsonDocument.Parse(await denied.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { prompt = "Hi", max_tokens = 1 }) };
        request.Headers.Authorization = new("Bearer", "sekret");
        Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(request)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/healthz")).StatusCode);
        // vLLM's tokenizer routes take the same key, at the root as under /v1.
        foreach (var path in new[] { "/tokenize", "/v1/tokenize", "/detokenize", "/v1/detokenize" })
        {
            var body = path.EndsWith("/detokenize") ? (object)new { tokens = new[] { 5 } } : new { prompt = "Hi" };
            Assert.Equal(HttpStatusCode.Unauthorized, (await server.PostAsync(path, body)).StatusCode);
            var keyed = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
            keyed.Headers.Authorization = new("Bearer", "sekret");
            Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(keyed)).StatusCode);
        }
    }

    [Fact]
    public async Task AdminAndInferenceKeys_OpenOnlyTheirOwnRoutes()
    {
        await using var node = await FakeExpertNode.StartAsync();
        await using var server = await GatewayServer.StartAsync("--expert-nodes", node.Address.ToString(), "--api-key", "inference-key", "--admin-api-key", "admin-key");
        Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(Get("/admin/routing", "admin-key"))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.Http.SendAsync(Get("/admin/routing", "inference-key"))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.Http.SendAsync(Get("/admin/routing", null))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.Http.SendAsync(Get("/admin/nodes/node-0/metrics", "inference-key"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(Get("/v1/models", "inference-key"))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await server.Http.SendAsync(Get("/v1/models", "admin-key"))).StatusCode);
    }

    [Fact]
    public async Task WithoutAnAdminKey_TheAdminRoutesAreOff()
    {
        await using var node = await FakeExpertNode.StartAsync();
        await using var server = await GatewayServer.StartAsync("--expert-nodes", node.Address.ToString(), "--admin-api-key", "");
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.SendAsync(Get("/admin/routing", null))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.SendAsync(Get("/admin/nodes/node-0/metrics", null))).StatusCode);
        var put = await server.Http.PutAsJsonAsync("/admin/nodes", new { nodes = new[] { "http://127.0.0.1:1" } });
        Assert.True(put.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.MethodNotAllowed, $"{(int)put.StatusCode}");
        Assert.DoesNotContain(node.Seen, r => r.Path.StartsWith("/metrics", StringComparison.Ordinal));
    }

    [Fact]
    public async Task NodeUrlWithCredentials_IsRefusedByTheAdminApi_WithoutEchoingThem()
    {
        await using var node = await FakeExpertNode.StartAsync();
        await using var server = await GatewayServer.StartAsync("--expert-nodes", node.Address.ToString());
        var response = await server.Admin.PutAsJsonAsync("/admin/nodes", new { nodes = new[] { "http://admin:hunter2@127.0.0.1:9" } });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("credentials", text);
        Assert.DoesNotContain("hunter2", text);
        var routing = JsonDocument.Parse(await server.Admin.GetStringAsync("/admin/routing")).RootElement.GetProperty("nodes");
        Assert.Equal([node.Address.ToString()], routing.EnumerateArray().Select(n => n.GetProperty("address").GetString()));
    }
}
