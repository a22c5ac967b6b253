using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MoeMesh.Operator.Tests.Images;

/// <summary>
/// The container images, checked without a Docker engine: each Dockerfile builds on the .NET 10 images of Ubuntu
/// 24.04 (whose libstdc++ satisfies TorchSharp), runs as the non-root user, and its own `dotnet publish` line,
/// run here on a copy of the sources, gives a program that starts (the gateway answers a completion).
/// </summary>
public sealed partial class DockerfileTests
{
    private static readonly Lazy<string> Sources = new(CopySources);

    [Theory]
    [InlineData("gateway", "moemesh-gateway.dll", true)]
    [InlineData("expert-node", "moemesh-expert-node.dll", true)]
    [InlineData("operator", "moemesh-operator.dll", false)]
    public async Task Dockerfile_PublishesAProgramThatRuns_AsTheNonRootUser(string program, string dll, bool torch)
    {
        var dockerfile = File.ReadAllText(Path.Combine(Programs.RepositoryRoot(), program, "Dockerfile"));
        var from = FromLine().Matches(dockerfile).Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(["mcr.microsoft.com/dotnet/sdk:10.0-noble", "mcr.microsoft.com/dotnet/aspnet:10.0-noble"], from);
        Assert.Contains("\nUSER $APP_UID\n", dockerfile);
        Assert.Contains($"ENTRYPOINT [\"dotnet\", \"{dll}\"]", dockerfile);
        var publish = PublishLine().Match(dockerfile);
        Assert.True(publish.Success, "a RUN dotnet publish line");
        // The GPU build argument reaches the publish (CUDA natives); here the default, the CPU natives.
        Assert.Equal(torch, publish.Value.Contains("-p:MoeMeshTorch=${TORCH}", StringComparison.Ordinal));
        if (torch) Assert.Contains("ARG TORCH=cpu", dockerfile);

        var output = Directory.CreateTempSubdirectory($"moemesh-image-{program}-").FullName;
        try
        {
            var command = publish.Groups[1].Value.Replace("${TORCH}", "cpu", StringComparison.Ordinal).Replace("-o /app", $"-o {output}/app", StringComparison.Ordinal);
            var (code, log) = await RunAsync("bash", ["-c", command], Sources.Value, TimeSpan.FromMinutes(10));
            Assert.True(code == 0, $"{command}\n{log[Math.Max(0, log.Length - 4000)..]}");
            var app = Path.Combine(output, "app", dll);
            Assert.True(File.Exists(app), $"{dll} in the published folder");
            if (torch) Assert.True(File.Exists(Path.Combine(output, "app", "runtimes", "linux-x64", "native", "libLibTorchSharp.so")) || File.Exists(Path.Combine(output, "app", "libLibTorchSharp.so")));

            switch (program)
            {
                case "gateway":
                    await GatewayAnswersAsync(app, output);
                    break;
                case "expert-node":
                    await NodeReadyAsync(app, output);
                    break;
                default:
                    var (crdCode, crd) = await RunAsync("dotnet", [app, "crd"], output, TimeSpan.FromMinutes(1));
                    Assert.Equal(0, crdCode);
                    Assert.Contains("kind: CustomResourceDefinition", crd);
                    Assert.Contains("name: moedeployments.moemesh.dev", crd);
                    break;
            }
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    private static async Task GatewayAnswersAsync(string app, string dir)
    {
        var info = new ProcessStartInfo("dotnet");
        foreach (var a in new[] { app, "--cache-dir", Path.Combine(dir, "cache"), "--urls", "http://127.0.0.1:0" }) info.ArgumentList.Add(a);
        var (process, address) = await Programs.StartListeningAsync(info, "published gateway");
        try
        {
            using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };
            await Eventually.HoldsAsync(async () => (await http.GetAsync("/readyz")).IsSuccessStatusCode, "the published gateway ready");
            var response = await http.PostAsJsonAsync("/v1/completions", new { prompt = "Hello", max_tokens = 4 });
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);
            Assert.Equal(4, JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            process.Dispose();
        }
    }

    private static async Task NodeReadyAsync(string app, string dir)
    {
        var info = new ProcessStartInfo("dotnet");
        foreach (var a in new[] { app, "--cache-dir", Path.Combine(dir, "cache"), "--urls", "http://127.0.0.1:0" }) info.ArgumentList.Add(a);
        var (process, address) = await Programs.StartListeningAsync(info, "published expert node");
        try
        {
            using var http = new HttpClient { BaseAddress = address };
            await Eventually.HoldsAsync(async () => (await http.GetAsync("/readyz")).IsSuccessStatusCode, "the published expert node ready");
            using var experts = JsonDocument.Parse(await http.GetStringAsync("/v1/experts"));
            Assert.True(experts.RootElement.GetProperty("layers").GetArrayLength() > 0);
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            process.Dispose();
        }
    }

    /// <summary>The sources a `docker build` context holds: the repository's files (not ignored), without build outputs.</summary>
    private static string CopySources()
    {
        var root = Programs.RepositoryRoot();
        var target = Directory.CreateTempSubdirectory("moemesh-image-sources-").FullName;
        var (code, files) = RunAsync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], root, TimeSpan.FromMinutes(1)).GetAwaiter().GetResult();
        if (code != 0) throw new InvalidOperationException(files);
        foreach (var file in files.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var from = Path.Combine(root, file);
            if (!File.Exists(from)) continue;
            var to = Path.Combine(target, file);
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(from, to);
        }
        return target;
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, string[] args, string dir, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await output + await error);
    }

    [GeneratedRegex(@"^FROM\s+(\S+)", RegexOptions.Multiline)]
    private static partial Regex FromLine();

    [GeneratedRegex(@"^RUN\s+(dotnet publish .*)$", RegexOptions.Multiline)]
    private static partial Regex PublishLine();
}
