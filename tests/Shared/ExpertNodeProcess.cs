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

    /// <summary>The node's entry assembly, built in the same configuration as the calling assembly.</summary>
    private static string NodeDll()
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory); // .../bin/<Configuration>/<tfm>/
        var tfm = bin.Name;
        var configuration = bin.Parent!.Name;
        var root = bin;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Platform.sln"))) root = root.Parent;
        if (root is null) throw new DirectoryNotFoundException($"no Platform.sln above {bin.FullName}");
        var dll = Path.Combine(root.FullName, "expert-node", "bin", configuration, tfm, "moemesh-expert-node.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("build the expert node first", dll);
    }

    /// <summary>Starts a node (port 0 picks a free one) and waits until it listens and has loaded its experts.</summary>
    public static Task<ExpertNodeProcess> StartAsync(string modelDir, string experts, int port = 0, params string[] extraArgs) =>
        StartPinnedAsync(null, modelDir, experts, port, extraArgs);

    /// <summary>As <see cref="StartAsync"/>, confined to the CPUs in <paramref name="cpus"/> (taskset syntax) when given.</summary>
    public static Task<ExpertNodeProcess> StartPinnedAsync(string? cpus, string modelDir, string experts, int port = 0, params string[] extraArgs) =>
        StartCoreAsync(cpus, modelDir, experts, port, new Dictionary<string, string>(), extraArgs);

    /// <summary>As <see cref="StartAsync"/>, with extra environment variables (options given as MOEMESH_ variables).</summary>
    public static Task<ExpertNodeProcess> StartWithEnvironmentAsync(string modelDir, string experts, IReadOnlyDictionary<string, string> environment) =>
        StartCoreAsync(null, modelDir, experts, 0, environment, []);

    private static async Task<ExpertNodeProcess> StartCoreAsync(
        string? cpus, string modelDir, string experts, int port, IReadOnlyDictionary<string, string> environment, string[] extraArgs)
    {
        var info = new ProcessStartInfo(cpus is null ? "dotnet" : "taskset")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in environment) info.Environment[name] = value;
        if (cpus is not null) foreach (var a in new[] { "-c", cpus, "dotnet" }) info.ArgumentList.Add(a);
        foreach (var a in new[] { NodeDll(), "--model", modelDir, "--experts", experts, "--urls", $"http://127.0.0.1:{port}" }.Concat(extraArgs)) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            output.Enqueue(e.Data);
            const string marker = "Now listening on: ";
            var at = e.Data.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0) listening.TrySetResult(new Uri(e.Data[(at + marker.Length)..].Trim()));
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException($"expert node exited: {string.Join('\n', output)}"));
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var address = await listening.Task.WaitAsync(TimeSpan.FromSeconds(60));
        var node = new ExpertNodeProcess(process, address, experts);
        await node.WaitReadyAsync();
        return node;
    }

    private async Task WaitReadyAsync()
    {
        using var http = new HttpClient { BaseAddress = Address };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited) throw new InvalidOperationException("expert node exited while loading");
            var response = await http.GetAsync("/readyz");
            if (response.IsSuccessStatusCode) return;
            await Task.Delay(50);
        }
        throw new TimeoutException($"expert node {Address} did not become ready");
    }

    /// <summary>Freezes the process (SIGSTOP): connections are accepted by the kernel but nothing answers.</summary>
    public void Pause() => Signal("STOP");

    public void Resume() => Signal("CONT");

    private void Signal(string name)
    {
        using var kill = Process.Start("kill", [$"-{name}", _process.Id.ToString()]);
        kill.WaitForExit();
    }

    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
