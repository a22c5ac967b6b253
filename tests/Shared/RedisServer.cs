using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace MoeMesh.Testing;

/// <summary>
/// A real redis-server (the Debian package) on its own loopback address, without persistence: killed and
/// restarted on the same address it comes back empty, as a restarted cache does.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly string[] _settings;
    private Process? _process;

    private RedisServer(string[] settings) => _settings = settings;

    public string Host { get; } = Programs.PrivateLoopbackHost();
    // A high port too: a system Redis listening on 0.0.0.0:6379 would otherwise answer for it.
    public int Port { get; } = Random.Shared.Next(20_000, 60_000);
    public string Url => $"redis://{Host}:{Port}";

    /// <summary>Starts a server; <paramref name="settings"/> are extra redis-server options (e.g. "--maxmemory", "100kb").</summary>
    public static async Task<RedisServer> StartAsync(params string[] settings)
    {
        var server = new RedisServer(settings);
        await server.RestartAsync();
        return server;
    }

    /// <summary>Starts the server (again, empty, after <see cref="Kill"/>) and waits until it answers PING.</summary>
    public async Task RestartAsync()
    {
        Kill();
        var info = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] args = ["--bind", Host, "--port", Port.ToString(), "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", Path.GetTempPath(), "--loglevel", "warning", .. _settings];
        foreach (var a in args) info.ArgumentList.Add(a);
        _process = Process.Start(info)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        await Eventually.HoldsAsync(PingAsync, $"redis-server on {Host}:{Port} answers");
    }

    /// <summary>Ends the server at once (SIGKILL): clients see the connection drop.</summary>
    public void Kill()
    {
        if (_process is null) return;
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
        _process = null;
    }

    /// <summary>Freezes the server (SIGSTOP): connections stay open and nothing answers.</summary>
    public void Pause() => Programs.Signal(_process!, "STOP");

    public void Resume() => Programs.Signal(_process!, "CONT");

    private async Task<bool> PingAsync()
    {
        if (_process is { HasExited: true }) throw new InvalidOperationException($"redis-server exited with code {_process.ExitCode}");
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(Host, Port);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray());
            var buffer = new byte[16];
            var n = await stream.ReadAsync(buffer);
            return Encoding.ASCII.GetString(buffer, 0, n).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        return ValueTask.CompletedTask;
    }
}
