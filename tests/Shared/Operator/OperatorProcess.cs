using System.Diagnostics;

namespace MoeMesh.Testing.Operator;

/// <summary>A real moemesh-operator process talking to a test API server through a kubeconfig.</summary>
public sealed class OperatorProcess : IAsyncDisposable
{
    private readonly Process _process;

    public Uri Address { get; }
    public string Identity { get; }
    public HttpClient Http { get; }

    private OperatorProcess(Process process, Uri address, string identity)
    {
        _process = process;
        Address = address;
        Identity = identity;
        Http = new HttpClient { BaseAddress = address };
    }

    public static async Task<OperatorProcess> StartAsync(string kubeconfig, string identity, params string[] extraArgs)
    {
        var info = new ProcessStartInfo("dotnet") { ArgumentList = { Programs.Dll("operator", "moemesh-operator") } };
        foreach (var a in (string[])["--kubeconfig", kubeconfig, "--urls", $"http://{Programs.PrivateLoopbackHost()}:0", "--identity", identity,
                     "--retry-base-ms", "100", .. extraArgs])
            info.ArgumentList.Add(a);
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var (process, address) = await Programs.StartListeningAsync(info, $"operator {identity}", log);
        return new OperatorProcess(process, address, identity) { _log = log };
    }

    private System.Collections.Concurrent.ConcurrentQueue<string> _log = new();

    /// <summary>The operator's last output lines that are not routine information, for failure messages.</summary>
    public string Tail(int lines = 12) => string.Join("\n", _log.Where(l => !l.StartsWith("info:", StringComparison.Ordinal)).TakeLast(lines));

    public Task<double?> MetricAsync(string series) => Programs.MetricAsync(Http, series);

    public bool Exited => _process.HasExited;

    public void Kill() => _process.Kill(entireProcessTree: true);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        Http.Dispose();
    }
}
