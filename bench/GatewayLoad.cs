using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using MoeMesh.Gateway.Hosting;
using MoeMesh.Testing;

namespace MoeMesh.Bench;

/// <summary>A gateway started in this process and streaming clients decoding through its HTTP API on loopback.</summary>
internal sealed class GatewayLoad : IAsyncDisposable
{
    private const int PromptTokens = 16;
    private readonly WebApplication? _app;
    private readonly GatewayProcess? _process;
    private readonly HttpClient _http;
    private readonly int _vocab;

    private GatewayLoad(WebApplication? app, GatewayProcess? process, HttpClient http, int vocab)
    {
        _app = app;
        _process = process;
        _http = http;
        _vocab = vocab;
    }

    /// <summary>A gateway in a process of its own (its libtorch work not sharing this process's cores' thread teams).</summary>
    public static async Task<GatewayLoad> StartProcessAsync(string dir, int vocab, params string[] extraArgs)
    {
        var process = await GatewayProcess.StartAsync(dir, ["--kv-cache-bytes", (1L << 30).ToString(), .. extraArgs]);
        return new GatewayLoad(null, process, new HttpClient { BaseAddress = process.Address, Timeout = TimeSpan.FromMinutes(10) }, vocab);
    }

    public static async Task<GatewayLoad> StartAsync(string dir, int vocab, params string[] extraArgs)
    {
        var app = GatewayApp.Build(["--model", dir, "--urls", "http://127.0.0.1:0", "--kv-cache-bytes", (1L << 30).ToString(), "--max-batch-tokens", "1024", .. extraArgs]);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(10) };
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!(await http.GetAsync("/readyz")).IsSuccessStatusCode)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the gateway did not become ready");
            await Task.Delay(100);
        }
        return new GatewayLoad(app, null, http, vocab);
    }

    /// <summary>
    /// Generated tokens per second of <paramref name="concurrency"/> streaming clients, each generating <paramref name="tokens"/>
    /// tokens greedily from a random prompt (the same prompts for the same <paramref name="seed"/>).
    /// </summary>
    public async Task<double> DecodeAsync(int concurrency, int tokens, int seed = 100)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async i =>
        {
            // Headers only, then the stream is read as it arrives, as a streaming client would (PostAsJsonAsync
            // would buffer the whole response before returning).
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = JsonContent.Create(new
                {
                    prompt = RandomPrompt(PromptTokens, _vocab, seed + i), max_tokens = tokens, temperature = 0, ignore_eos = true, stream = true,
                }),
            };
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            response.EnsureSuccessStatusCode();
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            while (await reader.ReadLineAsync() is { } line && line != "data: [DONE]") { }
        }));
        return concurrency * tokens / sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// One request of a random prompt of <paramref name="promptTokens"/> tokens generating <paramref name="tokens"/>
    /// tokens: prompt tokens per second to the first token, and tokens per second of the steps after it, from the
    /// gateway's own time-to-first-token and inter-token histograms (a stream cannot show them: the random tokens'
    /// bytes rarely form whole UTF-8 characters, so the gateway holds their text back and sends it late).
    /// </summary>
    public async Task<(double Prefill, double Decode)> PrefillThenDecodeAsync(int promptTokens, int tokens, int seed)
    {
        async Task<(double Ttft, double Sum, double Count)> Histograms()
        {
            var text = await _http.GetStringAsync("/metrics");
            return (Sum(text, "moemesh_time_to_first_token_seconds_sum"), Sum(text, "moemesh_inter_token_latency_seconds_sum"), Sum(text, "moemesh_inter_token_latency_seconds_count"));
        }
        var before = await Histograms();
        var response = await _http.PostAsJsonAsync("/v1/completions", new
        {
            prompt = RandomPrompt(promptTokens, _vocab, seed), max_tokens = tokens, temperature = 0, ignore_eos = true,
        });
        response.EnsureSuccessStatusCode();
        await response.Content.ReadAsStringAsync();
        var after = await Histograms();
        // A renamed histogram would read 0 here and print infinities: refuse instead.
        if (after.Ttft <= before.Ttft || after.Count - before.Count != tokens - 1)
            throw new InvalidOperationException("the gateway's time-to-first-token or inter-token histogram did not record this request");
        return (promptTokens / (after.Ttft - before.Ttft), tokens > 1 ? (after.Count - before.Count) / (after.Sum - before.Sum) : double.NaN);
    }

    /// <summary>The gateway process's id, when it runs in a process of its own.</summary>
    public int? Pid => _process?.Pid;

    /// <summary>Prompt tokens per second of <paramref name="concurrency"/> requests of <paramref name="promptTokens"/> random tokens each, generating one token.</summary>
    public async Task<double> PrefillAsync(int concurrency, int promptTokens, int seed)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async i =>
        {
            var response = await _http.PostAsJsonAsync("/v1/completions", new
            {
                prompt = RandomPrompt(promptTokens, _vocab, seed + i), max_tokens = 1, temperature = 0, ignore_eos = true,
            });
            response.EnsureSuccessStatusCode();
            await response.Content.ReadAsStringAsync();
        }));
        return concurrency * promptTokens / sw.Elapsed.TotalSeconds;
    }

    /// <summary>The sum of a Prometheus metric's samples whose line starts with <paramref name="prefix"/>.</summary>
    public async Task<double> MetricAsync(string prefix) => Sum(await _http.GetStringAsync("/metrics"), prefix);

    /// <summary>The sum of the samples in Prometheus text <paramref name="metrics"/> whose line starts with <paramref name="prefix"/>.</summary>
    private static double Sum(string metrics, string prefix) =>
        metrics.Split('\n').Where(l => l.StartsWith(prefix, StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    public static int[] RandomPrompt(int length, int vocab, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => r.Next(vocab)).ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        if (_process is not null) await _process.DisposeAsync();
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
