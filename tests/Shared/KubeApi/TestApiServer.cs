using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace MoeMesh.Testing.KubeApi;

/// <summary>One request as the server saw it.</summary>
public sealed record ApiRequest(string Method, string Path, string Query, string? ContentType, string Accept, string Verb, ResourceType? Type, string? Namespace, string? Name, string? Subresource)
{
    /// <summary>Whose token the request carried (see <see cref="TestApiServer.WriteKubeconfig"/>); null without a valid one.</summary>
    public string? User { get; init; }
}

/// <summary>
/// A Kubernetes API server for tests, over real HTTP on loopback: discovery (/api, /apis, /version, a minimal
/// OpenAPI v3), get, list (label and field selectors, Table output with the CRD's printer columns), watch
/// (from a resource version or from the current state), create, update, merge and server-side-apply patches,
/// delete with owner-reference garbage collection, the status and scale subresources. The real
/// KubernetesClient and the real kubectl talk to it. Tests can run an action before a chosen request (a
/// concurrent writer) or fail it.
/// </summary>
public sealed class TestApiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<ResourceType> _types = [.. ResourceType.BuiltIn];
    private readonly ConcurrentQueue<ApiRequest> _requests = new();
    private readonly List<(Func<ApiRequest, bool> Match, Func<ApiRequest, (int Code, string Message)?> Action)> _hooks = [];
    private readonly CancellationTokenSource _stopping = new();

    public Store Store { get; } = new();
    public Uri Url { get; private set; } = null!;
    public IReadOnlyCollection<ApiRequest> Requests => _requests;

    private TestApiServer(WebApplication app) => _app = app;

    public static async Task<TestApiServer> StartAsync(params V1CustomResourceDefinition[] crds)
    {
        var builder = WebApplication.CreateSlimBuilder();
        var host = IPAddress.Parse(Programs.PrivateLoopbackHost());
        // TLS as a real API server serves it: kubectl sends its bearer token only over TLS.
        var certificate = SelfSigned(host);
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(k => k.Listen(host, 0, l => l.UseHttps(certificate)));
        builder.Logging.ClearProviders();
        var server = new TestApiServer(builder.Build()) { _certificate = certificate };
        server._types.AddRange(crds.Select(ResourceType.FromCrd));
        server._app.Run(server.HandleAsync);
        await server._app.StartAsync();
        server.Url = new Uri(server._app.Urls.First());
        return server;
    }

    private X509Certificate2 _certificate = null!;

    private static X509Certificate2 SelfSigned(IPAddress host)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=moemesh-test-apiserver", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(host);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
    }

    public ResourceType Type(string plural) => _types.Single(t => t.Plural == plural);

    /// <summary>
    /// A kubeconfig for this server, written to <paramref name="path"/>, with a bearer token of its own for
    /// <paramref name="user"/> (requests record whose token they carried: the calls one program makes).
    /// </summary>
    public string WriteKubeconfig(string path, string user = AdminUser)
    {
        var token = user == AdminUser ? Token : _users.GetOrAdd(user, _ => Guid.NewGuid().ToString("N"));
        File.WriteAllText(path, $$"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: test
              cluster:
                server: {{Url.ToString().TrimEnd('/')}}
                certificate-authority-data: {{Convert.ToBase64String(Encoding.ASCII.GetBytes(_certificate.ExportCertificatePem()))}}
            users:
            - name: test
              user:
                token: {{token}}
            contexts:
            - name: test
              context:
                cluster: test
                user: test
                namespace: default
            current-context: test
            """);
        return path;
    }

    public IKubernetes Client() => new Kubernetes(new KubernetesClientConfiguration
    {
        Host = Url.ToString(), AccessToken = Token, SslCaCerts = new X509Certificate2Collection(X509CertificateLoader.LoadCertificate(_certificate.RawData)),
    });

    /// <summary>The bearer token of the tests' own client, as a real API server requires credentials.</summary>
    public string Token { get; } = Guid.NewGuid().ToString("N");

    public const string AdminUser = "test";

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _users = new();

    private string? UserOf(string authorization)
    {
        if (authorization == $"Bearer {Token}") return AdminUser;
        foreach (var (user, token) in _users)
            if (authorization == $"Bearer {token}") return user;
        return null;
    }

    /// <summary>Runs <paramref name="action"/> before the first request matching <paramref name="match"/>; a returned code fails that request.</summary>
    public void Before(Func<ApiRequest, bool> match, Func<ApiRequest, (int Code, string Message)?> action)
    {
        lock (_hooks) _hooks.Add((match, action));
    }

    private bool _disposed;

    /// <summary>Stops the server (open watches end); a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await _stopping.CancelAsync();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        try
        {
            var r = Parse(ctx.Request) with { User = UserOf(ctx.Request.Headers.Authorization.ToString()) };
            _requests.Enqueue(r);
            if (r.User is null) throw new ApiError(401, "Unauthorized", "Unauthorized");
            (int Code, string Message)? injected = null;
            lock (_hooks)
            {
                var i = _hooks.FindIndex(h => h.Match(r));
                if (i >= 0)
                {
                    var hook = _hooks[i];
                    _hooks.RemoveAt(i);
                    injected = hook.Action(r);
                }
            }
            if (injected is { } fail) throw new ApiError(fail.Code, fail.Code == 409 ? "Conflict" : "InternalError", fail.Message);
            await ServeAsync(ctx, r);
        }
        catch (ApiError e)
        {
            await WriteJson(ctx, e.Code, StatusObject(e.Code, e.Reason, e.Message));
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            await WriteJson(ctx, 400, StatusObject(400, "BadRequest", e.Message));
        }
    }

    private ApiRequest Parse(HttpRequest req)
    {
        var segments = req.Path.Value!.Trim('/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        string? group = null, version = null;
        string[] rest = [];
        if (segments is ["api", var v, ..]) (group, version, rest) = ("", v, segments[2..]);
        else if (segments is ["apis", var g, var gv, ..]) (group, version, rest) = (g, gv, segments[3..]);
        string? ns = null;
        if (rest is ["namespaces", var n, _, ..]) (ns, rest) = (n, rest[2..]);
        var type = rest.Length > 0 ? _types.FirstOrDefault(t => t.Group == group && t.Version == version && t.Plural == rest[0]) : null;
        var name = rest.Length > 1 ? rest[1] : null;
        var sub = rest.Length > 2 ? rest[2] : null;
        var watch = req.Query["watch"] is { Count: > 0 } w && w.ToString() is "true" or "1";
        var verb = (req.Method, name, watch) switch
        {
            ("GET", null, true) => "watch",
            ("GET", null, _) => "list",
            ("GET", _, _) => "get",
            ("POST", _, _) => "create",
            ("PUT", _, _) => "update",
            ("PATCH", _, _) => "patch",
            ("DELETE", _, _) => "delete",
            _ => req.Method.ToLowerInvariant(),
        };
        return new ApiRequest(req.Method, req.Path.Value!, req.QueryString.Value ?? "", req.ContentType, req.Headers.Accept.ToString(), verb, type, ns, name, sub);
    }

    private async Task ServeAsync(HttpContext ctx, ApiRequest r)
    {
        var path = r.Path.TrimEnd('/');
        if (r.Method == "GET" && Discovery(path) is { } doc)
        {
            await WriteJson(ctx, 200, doc);
            return;
        }
        if (r.Type is not { } t) throw new ApiError(404, "NotFound", $"the server could not find the requested resource ({r.Path})");
        var ns = r.Namespace ?? "";
        var q = ctx.Request.Query;
        switch (r.Verb, r.Subresource)
        {
            case ("list", _):
            {
                var items = Store.List(t, r.Namespace, Matcher(q));
                if (WantsTable(r)) await WriteJson(ctx, 200, Table(t, items));
                else await WriteJson(ctx, 200, new JsonObject
                {
                    ["kind"] = t.Kind + "List",
                    ["apiVersion"] = t.GroupVersion,
                    ["metadata"] = new JsonObject { ["resourceVersion"] = Store.ResourceVersion.ToString() },
                    ["items"] = new JsonArray(items.Select(i => (JsonNode)i).ToArray()),
                });
                return;
            }
            case ("watch", _):
                await WatchAsync(ctx, t, r.Namespace, Matcher(q), q["resourceVersion"].ToString(), q["timeoutSeconds"].ToString());
                return;
            case ("get", null):
            {
                var o = Store.Get(t, ns, r.Name!) ?? throw new ApiError(404, "NotFound", $"{t.Plural}.{t.Group} \"{r.Name}\" not found");
                await WriteJson(ctx, 200, WantsTable(r) ? Table(t, [o]) : o);
                return;
            }
            case ("get", "status"):
                await WriteJson(ctx, 200, Store.Get(t, ns, r.Name!) ?? throw new ApiError(404, "NotFound", $"{t.Plural} \"{r.Name}\" not found"));
                return;
            case ("get", "scale"):
                await WriteJson(ctx, 200, Scale(t, Store.Get(t, ns, r.Name!) ?? throw new ApiError(404, "NotFound", $"{t.Plural} \"{r.Name}\" not found")));
                return;
            case ("create", null):
                await WriteJson(ctx, 201, Store.Create(t, ns, await BodyAsync(ctx)));
                return;
            case ("update", null or "status"):
                await WriteJson(ctx, 200, Store.Replace(t, ns, r.Name!, await BodyAsync(ctx), r.Subresource == "status"));
                return;
            case ("update" or "patch", "scale"):
            {
                var body = await BodyAsync(ctx);
                var replicas = body["spec"]?["replicas"]?.GetValue<int>() ?? throw new ApiError(422, "Invalid", "spec.replicas: Required value");
                var scale = t.Scale ?? throw new ApiError(404, "NotFound", $"{t.Plural} has no scale subresource");
                var o = Store.Patch(t, ns, r.Name!, x => JsonPaths.Set(x, scale.SpecReplicasPath, replicas), status: false);
                await WriteJson(ctx, 200, Scale(t, o));
                return;
            }
            case ("patch", null or "status"):
            {
                var body = await BodyAsync(ctx);
                if (r.ContentType?.StartsWith("application/apply-patch", StringComparison.Ordinal) == true)
                {
                    var manager = q["fieldManager"].ToString();
                    if (manager.Length == 0) throw new ApiError(422, "Invalid", "fieldManager: Required value: is required for apply patch");
                    var (o, created) = Store.Apply(t, ns, r.Name!, body, manager, q["force"].ToString() == "true");
                    // An apply that creates is authorized as create as well as patch, as the real API server does it.
                    if (created) _requests.Enqueue(r with { Verb = "create" });
                    await WriteJson(ctx, created ? 201 : 200, o);
                }
                else if (r.ContentType?.StartsWith("application/merge-patch+json", StringComparison.Ordinal) == true
                         || r.ContentType?.StartsWith("application/strategic-merge-patch+json", StringComparison.Ordinal) == true)
                    await WriteJson(ctx, 200, Store.Patch(t, ns, r.Name!, x => JsonMerge.MergePatch(x, body), r.Subresource == "status"));
                else throw new ApiError(415, "UnsupportedMediaType", $"the body of the request was in an unknown format ({r.ContentType})");
                return;
            }
            case ("delete", null):
                await WriteJson(ctx, 200, Store.Delete(t, ns, r.Name!));
                return;
        }
        throw new ApiError(405, "MethodNotAllowed", $"{r.Method} is not supported on {r.Path}");
    }

    private static Func<JsonObject, bool> Matcher(IQueryCollection q)
    {
        var labels = Selectors.Labels(q["labelSelector"].ToString());
        var fields = Selectors.Fields(q["fieldSelector"].ToString());
        return o => labels(o) && fields(o);
    }

    private async Task WatchAsync(HttpContext ctx, ResourceType t, string? ns, Func<JsonObject, bool> match, string fromVersion, string timeoutSeconds)
    {
        var watcher = Store.Watch(t, ns, match, fromVersion);
        try
        {
            ctx.Response.StatusCode = 200;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.StartAsync();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, _stopping.Token);
            if (int.TryParse(timeoutSeconds, out var seconds)) stop.CancelAfter(TimeSpan.FromSeconds(seconds));
            await foreach (var (type, obj) in watcher.Events.Reader.ReadAllAsync(stop.Token))
            {
                var line = new JsonObject { ["type"] = type, ["object"] = obj }.ToJsonString() + "\n";
                await ctx.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(line), stop.Token);
                await ctx.Response.Body.FlushAsync(stop.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // The client went away, the timeout passed or the server stops: the watch ends.
        }
        catch (IOException)
        {
        }
        finally
        {
            Store.StopWatching(watcher);
        }
    }

    private static bool WantsTable(ApiRequest r) => r.Accept.Contains("as=Table", StringComparison.Ordinal);

    /// <summary>The rows kubectl get prints: the name, the CRD's printer columns (ages as the server words them).</summary>
    private static JsonObject Table(ResourceType t, IEnumerable<JsonObject> items)
    {
        var columns = new List<(string Name, string Type, string Path, int Priority, string Description)> { ("Name", "string", ".metadata.name", 0, "Name of the resource") };
        columns.AddRange(t.Columns?.Select(c => (c.Name, c.Type, c.JsonPath, c.Priority ?? 0, c.Description ?? "")) ?? [("Age", "date", ".metadata.creationTimestamp", 0, "")]);
        return new JsonObject
        {
            ["kind"] = "Table",
            ["apiVersion"] = "meta.k8s.io/v1",
            ["metadata"] = new JsonObject { ["resourceVersion"] = "" },
            ["columnDefinitions"] = new JsonArray(columns.Select(c => (JsonNode)new JsonObject
            {
                ["name"] = c.Name, ["type"] = c.Type == "date" ? "string" : c.Type, ["format"] = c.Name == "Name" ? "name" : "", ["description"] = c.Description, ["priority"] = c.Priority,
            }).ToArray()),
            ["rows"] = new JsonArray(items.Select(o => (JsonNode)new JsonObject
            {
                ["cells"] = new JsonArray(columns.Select(c => Cell(JsonPaths.Get(o, c.Path), c.Type)).ToArray()),
                ["object"] = new JsonObject { ["kind"] = "PartialObjectMetadata", ["apiVersion"] = "meta.k8s.io/v1", ["metadata"] = o["metadata"]?.DeepClone() },
            }).ToArray()),
        };
    }

    private static JsonNode? Cell(JsonNode? value, string type)
    {
        if (value is null) return null;
        if (type == "date" && DateTime.TryParse(value.ToString(), null, System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal, out var at))
        {
            var age = DateTime.UtcNow - at;
            return age.TotalMinutes < 2 ? $"{(int)age.TotalSeconds}s" : age.TotalHours < 2 ? $"{(int)age.TotalMinutes}m" : age.TotalDays < 2 ? $"{(int)age.TotalHours}h" : $"{(int)age.TotalDays}d";
        }
        return value.DeepClone();
    }

    private static JsonObject Scale(ResourceType t, JsonObject o)
    {
        var s = t.Scale ?? throw new ApiError(404, "NotFound", $"{t.Plural} has no scale subresource");
        var meta = o["metadata"]!;
        return new JsonObject
        {
            ["kind"] = "Scale",
            ["apiVersion"] = "autoscaling/v1",
            ["metadata"] = new JsonObject
            {
                ["name"] = meta["name"]?.DeepClone(), ["namespace"] = meta["namespace"]?.DeepClone(), ["uid"] = meta["uid"]?.DeepClone(),
                ["resourceVersion"] = meta["resourceVersion"]?.DeepClone(), ["creationTimestamp"] = meta["creationTimestamp"]?.DeepClone(),
            },
            ["spec"] = new JsonObject { ["replicas"] = JsonPaths.Get(o, s.SpecReplicasPath)?.DeepClone() ?? 0 },
            ["status"] = new JsonObject
            {
                ["replicas"] = JsonPaths.Get(o, s.StatusReplicasPath)?.DeepClone() ?? 0,
                ["selector"] = s.LabelSelectorPath is { } p ? JsonPaths.Get(o, p)?.DeepClone() : null,
            },
        };
    }

    /// <summary>/version, /api, /apis, the group-version resource lists and a minimal OpenAPI v3; null for other paths.</summary>
    private JsonObject? Discovery(string path)
    {
        var groups = _types.Where(t => t.Group != "").GroupBy(t => t.Group).ToArray();
        JsonObject Gv(string gv, string v) => new() { ["groupVersion"] = gv, ["version"] = v };
        switch (path)
        {
            case "/version":
                // kubectl (the packaged dispatcher) picks its client version from the server's minor version.
                return new JsonObject { ["major"] = "1", ["minor"] = "32", ["gitVersion"] = "v1.32.0", ["platform"] = "linux/amd64" };
            case "/api":
                return new JsonObject { ["kind"] = "APIVersions", ["versions"] = new JsonArray("v1"), ["serverAddressByClientCIDRs"] = new JsonArray() };
            case "/apis":
                return new JsonObject
                {
                    ["kind"] = "APIGroupList",
                    ["apiVersion"] = "v1",
                    ["groups"] = new JsonArray(groups.Select(g => (JsonNode)new JsonObject
                    {
                        ["name"] = g.Key,
                        ["versions"] = new JsonArray(g.Select(t => t.Version).Distinct().Select(v => (JsonNode)Gv($"{g.Key}/{v}", v)).ToArray()),
                        ["preferredVersion"] = Gv($"{g.Key}/{g.First().Version}", g.First().Version),
                    }).ToArray()),
                };
            case "/openapi/v3":
                return new JsonObject
                {
                    ["paths"] = new JsonObject(_types.Select(t => t.Group == "" ? "api/v1" : $"apis/{t.GroupVersion}").Distinct()
                        .Select(p => KeyValuePair.Create(p, (JsonNode?)new JsonObject { ["serverRelativeURL"] = $"/openapi/v3/{p}?hash=0" }))),
                };
        }
        if (path.StartsWith("/openapi/v3/", StringComparison.Ordinal))
        {
            var gv = path["/openapi/v3/".Length..];
            var kinds = _types.Where(t => (t.Group == "" ? "api/v1" : $"apis/{t.GroupVersion}") == gv).ToArray();
            if (kinds.Length == 0) return null;
            // Enough for kubectl to leave validation to the server: each kind's patch takes fieldValidation.
            return new JsonObject
            {
                ["openapi"] = "3.0.0",
                ["paths"] = new JsonObject(kinds.Select(t => KeyValuePair.Create($"/{gv}/namespaces/{{namespace}}/{t.Plural}/{{name}}", (JsonNode?)new JsonObject
                {
                    ["patch"] = new JsonObject
                    {
                        ["x-kubernetes-group-version-kind"] = new JsonObject { ["group"] = t.Group, ["version"] = t.Version, ["kind"] = t.Kind },
                        ["parameters"] = new JsonArray(new JsonObject { ["name"] = "fieldValidation", ["in"] = "query" }),
                    },
                }))),
            };
        }
        var lists = _types.GroupBy(t => t.GroupVersion).ToDictionary(g => g.Key == "v1" ? "/api/v1" : $"/apis/{g.Key}", g => g);
        if (!lists.TryGetValue(path, out var types)) return null;
        return new JsonObject
        {
            ["kind"] = "APIResourceList",
            ["apiVersion"] = "v1",
            ["groupVersion"] = types.Key,
            ["resources"] = new JsonArray(types.SelectMany(t =>
            {
                var verbs = new JsonArray("create", "delete", "get", "list", "patch", "update", "watch");
                var main = new JsonObject
                {
                    ["name"] = t.Plural, ["singularName"] = t.Singular ?? t.Kind.ToLowerInvariant(), ["namespaced"] = t.Namespaced, ["kind"] = t.Kind, ["verbs"] = verbs,
                    ["shortNames"] = new JsonArray((t.ShortNames ?? []).Select(s => (JsonNode)s).ToArray()),
                };
                var all = new List<JsonNode> { main };
                if (t.HasStatus) all.Add(new JsonObject { ["name"] = $"{t.Plural}/status", ["singularName"] = "", ["namespaced"] = t.Namespaced, ["kind"] = t.Kind, ["verbs"] = new JsonArray("get", "patch", "update") });
                if (t.Scale is not null)
                    all.Add(new JsonObject { ["name"] = $"{t.Plural}/scale", ["singularName"] = "", ["namespaced"] = t.Namespaced, ["group"] = "autoscaling", ["version"] = "v1", ["kind"] = "Scale", ["verbs"] = new JsonArray("get", "patch", "update") });
                return all;
            }).ToArray()),
        };
    }

    private static async Task<JsonObject> BodyAsync(HttpContext ctx)
    {
        using var reader = new StreamReader(ctx.Request.Body);
        var text = await reader.ReadToEndAsync();
        return JsonNode.Parse(text) as JsonObject ?? throw new ApiError(400, "BadRequest", "the body must be a JSON object");
    }

    private static JsonObject StatusObject(int code, string reason, string message) => new()
    {
        ["kind"] = "Status",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject(),
        ["status"] = "Failure",
        ["message"] = message,
        ["reason"] = reason,
        ["code"] = code,
    };

    private static async Task WriteJson(HttpContext ctx, int code, JsonObject body)
    {
        ctx.Response.StatusCode = code;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(body.ToJsonString());
    }
}
