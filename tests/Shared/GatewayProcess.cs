using System.Diagnostics;

namespace MoeMesh.Testing;

/// <summary>A real moemesh-gateway process on a loopback port (shared by the tests and the benchmark).</summary>
public sealed class GatewayProcess : IAsyncDisposable
{
    private readonly Process _process;

    public Uri Address { get; }

    /// <summary>The gateway's process id (for reading its memory from /proc).</summary>
    public int Pid => _process.Id;
    public HttpClient Http { get; }

    private GatewayProcess(Process process, Uri address)
    {
        _process = process;
        Address = address;
        Http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(300) };
    }

    /// <summary>
    /// Starts a gateway serving <paramref name="modelDir"/> (null: no --model, the built-in demo) on a free port and
    /// waits until /readyz answers 200.
    /// </summary>
    public static Task<GatewayProcess> StartAsync(string? modelDir, params string[] extraArgs) => StartServingAsync(modelDir, "demo", extraArgs);

    /// <summary>As <see cref="StartAsync"/>, serving the model under <paramref name="servedName"/>.</summary>
    public static async Task<GatewayProcess> StartServingAsync(string? modelDir, string servedName, params string[] extraArgs)
    {
        var info = new ProcessStartInfo("dotnet");
        string[] model = modelDir is null ? [] : ["--model", modelDir];
        foreach (var a in (string[])[Programs.Dll("gateway", "moemesh-gateway"), .. model, "--urls", "http://127.0.0.1:0", "--served-model-name", servedName, .. extraArgs])
            info.ArgumentList.Add(a);
        // Only the options given here: no MOEMESH_ variable of the test run leaks in.
        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("MOEMESH_", StringComparison.Ordinal)).ToList()) info.Environment.Remove(name);
        var (process, address) = await Programs.StartListeningAsync(info, "gateway");
        var gateway = new GatewayProcess(process, address);
        await Eventually.HoldsAsync(async () =>
        {
            if (process.HasExited) throw new InvalidOperationException("gateway exited while starting");
            var ready = await gateway.Http.GetAsync("/readyz");
            return (ready.IsSuccessStatusCode, await ready.Content.ReadAsStringAsync());
        }, r => r.IsSuccessStatusCode, $"gateway {address} ready");
        return gateway;
    }

    /// <summary>The value of a metric series (its name, with its labels if any); null when absent.</summary>
    public Task<double?> MetricAsync(string series) => Programs.MetricAsync(Http, series);

    /// <summary>Polls the metric until <paramref name="done"/> holds for its value; returns that value.</summary>
    public Task<double> WaitForMetricAsync(string series, Func<double, bool> done, string what) => Programs.WaitForMetricAsync(Http, series, done, what);

    public ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
