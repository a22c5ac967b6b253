using System.Diagnostics;
using System.Text;

namespace MoeMesh.Testing;

/// <summary>
/// A real Prometheus (the Debian package) on its own loopback address, scraping the given targets every second
/// with the labels a ServiceMonitor gives them (namespace, service, pod), its data in a temporary directory.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dir;
    private readonly StringBuilder _log = new();

    private PrometheusServer(Process process, string dir, Uri url)
    {
        _process = process;
        _dir = dir;
        Url = url;
    }

    public Uri Url { get; }

    /// <summary>A scrape target: the pod's address and the labels that name it.</summary>
    public sealed record Target(Uri Address, string Namespace, string Service, string Pod);

    public static async Task<PrometheusServer> StartAsync(params Target[] targets)
    {
        var dir = Directory.CreateTempSubdirectory("moemesh-prometheus-").FullName;
        var config = new StringBuilder("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pods\n    static_configs:\n");
        foreach (var t in targets)
            config.Append($"      - targets: [\"{t.Address.Host}:{t.Address.Port}\"]\n        labels: {{namespace: \"{t.Namespace}\", service: \"{t.Service}\", pod: \"{t.Pod}\"}}\n");
        File.WriteAllText(Path.Combine(dir, "prometheus.yml"), config.ToString());
        var url = new Uri($"http://{Programs.PrivateLoopbackHost()}:{Random.Shared.Next(20_000, 60_000)}/");
        var info = new ProcessStartInfo("prometheus") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { $"--config.file={Path.Combine(dir, "prometheus.yml")}", $"--storage.tsdb.path={Path.Combine(dir, "data")}", $"--web.listen-address={url.Host}:{url.Port}", "--log.level=warn" })
            info.ArgumentList.Add(a);
        var server = new PrometheusServer(Process.Start(info)!, dir, url);
        server._process.OutputDataReceived += (_, e) => server.Append(e.Data);
        server._process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        server._process.BeginOutputReadLine();
        server._process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(2) };
        await Eventually.HoldsAsync(async () =>
        {
            if (server._process.HasExited) throw new InvalidOperationException($"prometheus exited with code {server._process.ExitCode}: {server.Log}");
            try
            {
                return (await http.GetAsync("-/ready")).IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }, $"prometheus on {url} ready");
        return server;
    }

    /// <summary>The raw answer of an instant query, for failure messages.</summary>
    public async Task<string> QueryAsync(string query)
    {
        using var http = new HttpClient { BaseAddress = Url, Timeout = TimeSpan.FromSeconds(2) };
        try
        {
            return await http.GetStringAsync("api/v1/query?query=" + Uri.EscapeDataString(query));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return $"{query}: {e.Message}";
        }
    }

    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_log) _log.AppendLine(line);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: the temporary directory is the system's to clean.
        }
    }
}
