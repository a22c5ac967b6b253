using System.Net.Http.Json;
using System.Text.Json;
using MoeMesh.Engine.Kv;
using StackExchange.Redis;

namespace MoeMesh.Gateway.Tests.KvStore;

/// <summary>
/// Gateways sharing latent KV pages through a real redis-server: reuse across processes and restarts,
/// exact output against a gateway without any cache, bad pages rejected, and Redis dying, freezing or
/// coming back empty without a request failing.
/// </summary>
public sealed class SharedKvStoreTests
{
    private const int PageSize = 16;
    private const string Hits = "moemesh_kv_store_hit_pages_total";
    private const string Stored = "moemesh_kv_store_written_pages_total{result=\"stored\"}";

    /// <summary>A prompt of token ids, distinct per seed, that the demo vocabulary holds.</summary>
    private static int[] Prompt(int seed, int length) => Enumerable.Range(0, length).Select(i => 5 + (seed * 31 + i * 17) % 240).ToArray();

    private static object Request(int[] prompt, int maxTokens = 5) =>
        new { prompt, max_tokens = maxTokens, temperature = 0, logprobs = 2, return_tokens_as_token_ids = true, ignore_eos = true };

    /// <summary>Whole pages of a prompt that can come from a cache: all but the one holding its last token.</summary>
    private static int Reusable(int[] prompt) => (prompt.Length - 1) / PageSize;

    private static Task<JsonElement> PostAsync(HttpClient http, int[] prompt) => PostAsync(http, Request(prompt));

    private static async Task<JsonElement> PostAsync(HttpClient http, object body)
    {
        using var response = await http.PostAsJsonAsync("/v1/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    private static string[] Store(RedisServer redis, params string[] more) => ["--kv-store", redis.Url, .. more];

    private const string Up = "moemesh_kv_store_up";

    /// <summary>
    /// A gateway on the shared store, once it is connected: before that it computes locally and shares nothing
    /// (as it must), which would leave a test's first request unshared.
    /// </summary>
    private static async Task<GatewayServer> SharingGatewayAsync(RedisServer redis, params string[] more)
    {
        var gateway = await GatewayServer.StartAsync(Store(redis, more));
        await gateway.WaitForMetricAsync(Up, v => v == 1, "store connected");
        return gateway;
    }

    private static async Task<GatewayProcess> SharingGatewayProcessAsync(RedisServer redis)
    {
        var gateway = await GatewayProcess.StartAsync(GatewayServer.ModelDir, Store(redis));
        await gateway.WaitForMetricAsync(Up, v => v == 1, "store connected");
        return gateway;
    }

    [Fact]
    public async Task SecondGatewayProcess_ReusesTheFirstsPages_AndAnswersAsAGatewayWithoutCache()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var first = await SharingGatewayProcessAsync(redis);
        await using var second = await SharingGatewayProcessAsync(redis);
        await using var uncached = await GatewayServer.StartAsync("--prefix-caching", "off");
        var prompt = Prompt(1, 200);
        var continued = prompt.Concat(Prompt(2, 40)).ToArray();

        Completions.AssertSame(await uncached.PostJsonAsync("/v1/completions", Request(prompt)), await PostAsync(first.Http, prompt));
        // Prefill and decode pages: 200 prompt tokens and 4 fed-back outputs make 12 whole pages.
        await first.WaitForMetricAsync(Stored, v => v >= 12, "pages written by the first gateway");

        var reply = await PostAsync(second.Http, continued);
        Assert.Equal(12, await second.MetricAsync(Hits)); // every page of the shared prompt; the 13th holds the first's output
        Assert.Equal(12 * PageSize, await second.MetricAsync("moemesh_kv_store_hit_tokens_total"));
        Assert.Equal(12 * PageSize, await second.MetricAsync("moemesh_prefix_cache_hits_total"));
        Completions.AssertSame(await uncached.PostJsonAsync("/v1/completions", Request(continued)), reply);
    }

    [Fact]
    public async Task RestartedGateway_ReusesWhatItWroteBeforeItStopped()
    {
        await using var redis = await RedisServer.StartAsync();
        var prompt = Prompt(3, 100);
        JsonElement before;
        await using (var gateway = await SharingGatewayAsync(redis))
        {
            before = await gateway.PostJsonAsync("/v1/completions", Request(prompt));
            await gateway.WaitForMetricAsync(Stored, v => v >= Reusable(prompt), "pages written");
            Assert.Equal(0, await gateway.MetricAsync(Hits));
        }
        await using var restarted = await SharingGatewayAsync(redis);
        var after = await restarted.PostJsonAsync("/v1/completions", Request(prompt));
        Assert.Equal(Reusable(prompt), await restarted.MetricAsync(Hits));
        Assert.Equal(1, await restarted.MetricAsync("moemesh_kv_store_lookups_total{result=\"hit\"}"));
        Completions.AssertSame(before, after);
    }

    [Fact]
    public async Task CorruptedPages_AreRejectedAndCounted_AndTheOutputIsStillRight()
    {
        await using var redis = await RedisServer.StartAsync();
        var prefix = $"corrupt-{Guid.NewGuid():N}";
        await using var writer = await SharingGatewayAsync(redis, "--kv-store-prefix", prefix);
        (string Corruption, string Reason)[] cases = [("flipped byte", "checksum"), ("truncated", "size"), ("fingerprint", "fingerprint"), ("tokens", "tokens")];
        var prompts = cases.Select((_, i) => Prompt(10 + i, 60)).ToArray();
        var expected = new List<JsonElement>();
        foreach (var p in prompts) expected.Add(await writer.PostJsonAsync("/v1/completions", Request(p)));
        await writer.WaitForMetricAsync(Stored, v => v >= prompts.Sum(Reusable), "pages written");

        using var client = await ConnectionMultiplexer.ConnectAsync($"{redis.Host}:{redis.Port}");
        var db = client.GetDatabase();
        // Page 1 of each prompt: page 0 is still used, the lookup stops at the bad page.
        var page1 = prompts.Select(p => $":{PageHash.Of(PageHash.Of(PageHash.Root, p, 0, PageSize), p, 1, PageSize):x32}").ToArray();
        var keys = await Eventually.HoldsAsync(() => Task.FromResult(client.GetServer(redis.Host, redis.Port).Keys(pattern: $"{prefix}:*").Select(k => (string)k!).ToList()),
            ks => page1.All(suffix => ks.Any(k => k.EndsWith(suffix, StringComparison.Ordinal))), "page 1 of every prompt in Redis");
        for (var i = 0; i < cases.Length; i++)
        {
            var key = keys.Single(k => k.EndsWith(page1[i], StringComparison.Ordinal));
            var value = (byte[])(await db.StringGetAsync(key))!;
            switch (cases[i].Corruption)
            {
                case "flipped byte": value[value.Length / 2] ^= 0x40; break;
                case "truncated": value = value[..^40]; break;
                case "fingerprint": value[8] ^= 1; Gateway.KvStore.KvPageFormat.Seal(value); break;
                // Another page's tokens under this key, consistently checksummed: only the token check sees it.
                case "tokens": value[56] ^= 1; Gateway.KvStore.KvPageFormat.Seal(value); break;
            }
            await db.StringSetAsync(key, value);
        }

        await using var reader = await SharingGatewayAsync(redis, "--kv-store-prefix", prefix);
        for (var i = 0; i < cases.Length; i++)
        {
            Completions.AssertSame(expected[i], await reader.PostJsonAsync("/v1/completions", Request(prompts[i])));
            Assert.Equal(1, await reader.MetricAsync($"moemesh_kv_store_rejected_pages_total{{reason=\"{cases[i].Reason}\"}}"));
        }
        Assert.Equal(cases.Length, await reader.MetricAsync(Hits)); // page 0 of each prompt only
        Assert.Equal(cases.Length, await reader.MetricAsync("moemesh_kv_store_lookups_total{result=\"rejected\"}"));

        // Repaired: each bad page was deleted, so the reader's recomputed page 1 of each prompt was written
        // (its pages 2 and 3 were in Redis already).
        await reader.WaitForMetricAsync(Stored, v => v >= cases.Length, "recomputed pages written");
        await using var third = await SharingGatewayAsync(redis, "--kv-store-prefix", prefix);
        for (var i = 0; i < cases.Length; i++) Completions.AssertSame(expected[i], await third.PostJsonAsync("/v1/completions", Request(prompts[i])));
        Assert.Equal(prompts.Sum(Reusable), await third.MetricAsync(Hits));
        Assert.Null(await third.MetricAsync("moemesh_kv_store_lookups_total{result=\"rejected\"}"));
    }

    [Fact]
    public async Task RedisKilledDuringConcurrentRequests_EveryRequestCompletesRight_AndSharingResumesWhenItReturns()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var uncached = await GatewayServer.StartAsync("--prefix-caching", "off");
        await using var gateway = await SharingGatewayAsync(redis);
        var prompts = Enumerable.Range(0, 10).Select(i => Prompt(20 + i % 4, 40 + 8 * i)).ToArray();
        var expected = new List<JsonElement>();
        foreach (var p in prompts) expected.Add(await uncached.PostJsonAsync("/v1/completions", Request(p, maxTokens: 40)));

        Task<JsonElement[]> replies;
        using (var hold = new Serving.LoopHold(gateway, 8))
        {
            replies = Task.WhenAll(prompts.Select(p => PostAsync(gateway.Http, Request(p, maxTokens: 40))));
            // Killed between two steps, once pages have gone to Redis, with every request still generating.
            await hold.ReachedAsync();
            await gateway.WaitForMetricAsync(Stored, v => v >= 1, "a page written");
            redis.Kill();
            hold.Release();
        }
        for (var i = 0; i < prompts.Length; i++) Completions.AssertSame(expected[i], (await replies)[i]);
        // Pages computed after the kill were not shared, and said so.
        await Eventually.HoldsAsync(async () => (await gateway.MetricAsync("moemesh_kv_store_write_dropped_pages_total{reason=\"unavailable\"}") ?? 0)
            + (await gateway.MetricAsync("moemesh_kv_store_write_dropped_pages_total{reason=\"error\"}") ?? 0), v => v >= 1, "pages dropped after the kill");

        // Down: still served, still ready, the outage visible.
        await gateway.WaitForMetricAsync(Up, v => v == 0, "store down");
        var late = Prompt(30, 64);
        Completions.AssertSame(await uncached.PostJsonAsync("/v1/completions", Request(late)), await gateway.PostJsonAsync("/v1/completions", Request(late)));
        var (status, body) = await gateway.GetTextAsync("/readyz");
        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        Assert.Contains("unavailable", body);

        await redis.RestartAsync();
        await gateway.WaitForMetricAsync(Up, v => v == 1, "store back");
        var fresh = Prompt(40, 70);
        var storedBefore = await gateway.MetricAsync(Stored) ?? 0;
        var reply = await gateway.PostJsonAsync("/v1/completions", Request(fresh));
        await gateway.WaitForMetricAsync(Stored, v => v >= storedBefore + Reusable(fresh), "pages written after the restart");
        await using var other = await SharingGatewayAsync(redis);
        Completions.AssertSame(reply, await other.PostJsonAsync("/v1/completions", Request(fresh)));
        Assert.Equal(Reusable(fresh), await other.MetricAsync(Hits));
    }

    [Fact]
    public async Task RedisFrozenDuringALookup_TheLookupIsAbandonedAtItsBudget_AndThePromptComputed()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var gateway = await SharingGatewayAsync(redis, "--kv-store-lookup-budget-ms", "300");
        await using var uncached = await GatewayServer.StartAsync("--prefix-caching", "off");
        var prompt = Prompt(50, 80);
        var expected = await uncached.PostJsonAsync("/v1/completions", Request(prompt));
        redis.Pause();
        try
        {
            var reply = await gateway.PostJsonAsync("/v1/completions", Request(prompt));
            Completions.AssertSame(expected, reply);
            // Our budget ended it ("timeout"), not the client library's own 5 s command timeout ("error").
            Assert.Equal(1, await gateway.MetricAsync("moemesh_kv_store_lookups_total{result=\"timeout\"}"));
            Assert.Null(await gateway.MetricAsync("moemesh_kv_store_lookups_total{result=\"error\"}"));
        }
        finally
        {
            redis.Resume();
        }
    }

    [Fact]
    public async Task ShutdownWithALookupInFlight_StillAnswersTheAcceptedRequest()
    {
        await using var redis = await RedisServer.StartAsync();
        // A budget longer than the test: only shutdown can end this lookup early.
        var gateway = await SharingGatewayAsync(redis, "--kv-store-lookup-budget-ms", "600000");
        await using var uncached = await GatewayServer.StartAsync("--prefix-caching", "off");
        var prompt = Prompt(80, 50);
        var expected = await uncached.PostJsonAsync("/v1/completions", Request(prompt));
        redis.Pause();
        try
        {
            var reply = PostAsync(gateway.Http, Request(prompt));
            await gateway.WaitForMetricAsync("moemesh_requests_waiting", v => v == 1, "the request waiting on its lookup");
            var stopping = gateway.App.StopAsync();
            Completions.AssertSame(expected, await reply);
            await stopping;
        }
        finally
        {
            redis.Resume();
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task FullRedisRefusingWrites_FailsNoRequest()
    {
        // Over its memory limit with no eviction policy: Redis answers every write with an OOM error.
        await using var redis = await RedisServer.StartAsync("--maxmemory", "100kb", "--maxmemory-policy", "noeviction");
        await using var gateway = await SharingGatewayAsync(redis);
        await using var uncached = await GatewayServer.StartAsync("--prefix-caching", "off");
        var prompt = Prompt(70, 90);
        Completions.AssertSame(await uncached.PostJsonAsync("/v1/completions", Request(prompt)), await gateway.PostJsonAsync("/v1/completions", Request(prompt)));
        await gateway.WaitForMetricAsync("moemesh_kv_store_errors_total{operation=\"write\"}", v => v >= 1, "refused writes counted");
        Assert.Null(await gateway.MetricAsync(Stored));
        Completions.AssertSame(await uncached.PostJsonAsync("/v1/completions", Request(prompt)), await gateway.PostJsonAsync("/v1/completions", Request(prompt)));
    }

    [Fact]
    public async Task GatewayStartedWithoutRedis_ServesReadyAndComputesLocally()
    {
        // Nothing listens there.
        await using var gateway = await GatewayServer.StartAsync("--kv-store", $"redis://{Programs.PrivateLoopbackHost()}:6390");
        await using var uncached = await GatewayServer.StartAsync("--prefix-caching", "off");
        var prompt = Prompt(60, 50);
        Completions.AssertSame(await uncached.PostJsonAsync("/v1/completions", Request(prompt)), await gateway.PostJsonAsync("/v1/completions", Request(prompt)));
        Assert.Equal(0, await gateway.MetricAsync(Up));
        Assert.Equal(1, await gateway.MetricAsync("moemesh_kv_store_lookups_total{result=\"unavailable\"}"));
        var (status, body) = await gateway.GetTextAsync("/readyz");
        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        Assert.Contains("unavailable", body);
    }
}
