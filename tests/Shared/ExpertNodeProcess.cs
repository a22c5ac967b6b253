using System.Diagnostics;

namespace MoeMesh.Testing;

/// <summary>A real moemesh-expert-node process on a loopback port (shared by the tests and the benchmark).</summary>
public sealed class ExpertNodeProcess : IAsyncDisposable
{
    private readonly Process _process;

    public Uri Address { get; }
    public string Experts { get; }

    private ExpertNodeProcess(Process process, Uri address, string experts)
    {
        _process = process;
        Address = address;
        Experts = experts;
    }

    private static string NodeDll() => Programs.Dll("expert-node", "moemesh-expert-node");

    /// <summary>
    /// Starts a node (port 0 picks a free one) and waits until it listens and has loaded its experts;
    /// <paramref name="modelDir"/> null gives no --model (the built-in demo).
    /// </summary>
    public static Task<ExpertNodeProcess> StartAsync(string? modelDir, string experts, int port = 0, params string[] extraArgs) =>
        StartPinnedAsync(null, modelDir, experts, port, extraArgs);

    /// <summary>As <see cref="StartAsync"/>, confined to the CPUs in <paramref name="cpus"/> (taskset syntax) when given.</summary>
    public static Task<ExpertNodeProcess> StartPinnedAsync(string? cpus, string? modelDir, string experts, int port = 0, params string[] extraArgs) =>
        StartCoreAsync(cpus, modelDir, experts, $"127.0.0.1:{port}", new Dictionary<string, string>(), extraArgs);

    /// <summary>As <see cref="StartAsync"/>, with extra environment variables (options given as MOEMESH_ variables).</summary>
    public static Task<ExpertNodeProcess> StartWithEnvironmentAsync(string modelDir, string experts, IReadOnlyDictionary<string, string> environment) =>
        StartCoreAsync(null, modelDir, experts, "127.0.0.1:0", environment, []);

    /// <summary>
    /// As <see cref="StartAsync"/>, listening on <paramref name="hostAndPort"/>. A node restarted on its own address
    /// (see <see cref="Programs.PrivateLoopbackHost"/>) cannot find its port taken by another test or process meanwhile.
    /// </summary>
    public static Task<ExpertNodeProcess> StartAtAsync(string modelDir, string experts, string hostAndPort, params string[] extraArgs) =>
        StartCoreAsync(null, modelDir, experts, hostAndPort, new Dictionary<string, string>(), extraArgs);

    /// <summary>As <see cref="StartAsync"/>, but returns once the node listens, without waiting for its experts to load.</summary>
    public static Task<ExpertNodeProcess> StartListeningAsync(string modelDir, string experts) =>
        StartCoreAsync(null, modelDir, experts, "127.0.0.1:0", new Dictionary<string, string>(), [], waitReady: false);

    private static async Task<ExpertNodeProcess> StartCoreAsync(
        string? cpus, string? modelDir, string experts, string hostAndPort, IReadOnlyDictionary<string, string> environment, string[] extraArgs, bool waitReady = true)
    {
        var info = new ProcessStartInfo(cpus is null ? "dotnet" : "taskset");
        foreach (var (name, value) in environment) info.Environment[name] = value;
        if (cpus is not null) foreach (var a in new[] { "-c", cpus, "dotnet" }) info.ArgumentList.Add(a);
        string[] model = modelDir is null ? [] : ["--model", modelDir];
        foreach (var a in (string[])[NodeDll(), .. model, "--experts", experts, "--urls", $"http://{hostAndPort}", .. extraArgs]) info.ArgumentList.Add(a);
        var (process, address) = await Programs.StartListeningAsync(info, "expert node");
        var node = new ExpertNodeProcess(process, address, experts);
        if (waitReady) await node.WaitReadyAsync();
        return node;
    }

    private async Task WaitReadyAsync()
    {
        using var http = new HttpClient { BaseAddress = Address };
        await Eventually.HoldsAsync(async () =>
        {
            if (_process.HasExited) throw new InvalidOperationException("expert node exited while loading");
            return (await http.GetAsync("/readyz")).IsSuccessStatusCode;
        }, $"expert node {Address} ready");
    }

    /// <summary>Freezes the process (SIGSTOP): connections are accepted by the kernel but nothing answers.</summary>
    public void Pause() => Programs.Signal(_process, "STOP");

    public void Resume() => Programs.Signal(_process, "CONT");

    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    private bool _disposed;

    /// <summary>Kills the node and frees the process; a second call does nothing.</summary>
    public ValueTask DisposeAsync()
    {
        if (_disposed) return ValueTask.CompletedTask;
        _disposed = true;
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
