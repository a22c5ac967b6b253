using System.Diagnostics;

namespace MoeMesh.Testing;

/// <summary>The solution's programs as built next to the tests, run as real processes.</summary>
public static class Programs
{
    /// <summary>The entry assembly of the program in <paramref name="folder"/>, built in the same configuration as the calling assembly.</summary>
    public static string Dll(string folder, string assembly)
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory); // .../bin/<Configuration>/<tfm>/
        var tfm = bin.Name;
        var configuration = bin.Parent!.Name;
        var dll = Path.Combine(RepositoryRoot(), folder, "bin", configuration, tfm, $"{assembly}.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"build {folder} first", dll);
    }

    /// <summary>The folder holding Platform.sln, above the running tests.</summary>
    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Platform.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException($"no Platform.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>Runs a program to its end (it must end by itself) and returns its exit code and output.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        // A clean environment for the options: no MOEMESH_ variable of the test run leaks in.
        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("MOEMESH_", StringComparison.Ordinal)).ToList()) info.Environment.Remove(name);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Eventually.DefaultTimeout);
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>
    /// Starts a program that logs "Now listening on: URL" once it serves (ASP.NET Core's line) and returns the
    /// process and that URL; fails with the program's output if it exits first.
    /// </summary>
    public static async Task<(Process Process, Uri Address)> StartListeningAsync(ProcessStartInfo info, string what, System.Collections.Concurrent.ConcurrentQueue<string>? log = null)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        var process = Process.Start(info)!;
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        // The program's output, kept for failure messages (and for the caller when it passes a queue).
        var output = log ?? new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            output.Enqueue(e.Data);
            const string marker = "Now listening on: ";
            var at = e.Data.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0) listening.TrySetResult(new Uri(e.Data[(at + marker.Length)..].Trim()));
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException($"{what} exited: {string.Join('\n', output)}"));
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, await listening.Task.WaitAsync(TimeSpan.FromSeconds(60)));
    }

    /// <summary>A loopback address of 127.0.0.0/8 that nothing else in the test run uses: a server restarted on it finds its port free.</summary>
    public static string PrivateLoopbackHost() => $"127.{Random.Shared.Next(1, 255)}.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(2, 255)}";

    /// <summary>Sends a signal (STOP freezes a process: connections are accepted by the kernel but nothing answers; CONT resumes it).</summary>
    public static void Signal(Process process, string name)
    {
        using var kill = Process.Start("kill", [$"-{name}", process.Id.ToString()]);
        kill.WaitForExit();
    }

    /// <summary>The value of a metric series in a server's /metrics (<paramref name="series"/> is the name with its labels, if any); null when absent.</summary>
    public static async Task<double?> MetricAsync(HttpClient http, string series)
    {
        var line = (await http.GetStringAsync("/metrics")).Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? null : double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Polls the series until <paramref name="done"/> holds for its value; returns that value.</summary>
    public static async Task<double> WaitForMetricAsync(HttpClient http, string series, Func<double, bool> done, string what) =>
        (await Eventually.HoldsAsync(() => MetricAsync(http, series), v => v is { } x && done(x), $"{series} {what}"))!.Value;
}
