using System.Diagnostics;
using System.Text.Json;

namespace MoeMesh.Testing;

/// <summary>Runs one of tests/oracle's node scripts on a JSON request (test.sh installs node and the scripts' npm packages).</summary>
public static class NodeOracle
{
    public static string Dir => Path.Combine(Programs.RepositoryRoot(), "tests", "oracle");

    /// <summary>A file that an npm package installed under tests/oracle/node_modules ships.</summary>
    public static string PackageFile(params string[] parts)
    {
        var path = Path.Combine([Dir, "node_modules", .. parts]);
        return File.Exists(path) ? path : throw new FileNotFoundException("run test.sh: it installs tests/oracle's npm packages", path);
    }

    /// <summary>Runs <paramref name="script"/> with the request written to a file, and parses what it prints.</summary>
    public static T Run<T>(string script, object request)
    {
        var dir = Directory.CreateTempSubdirectory("moemesh-oracle-").FullName;
        var file = Path.Combine(dir, "request.json");
        File.WriteAllText(file, JsonSerializer.Serialize(request));
        var info = new ProcessStartInfo("node") { WorkingDirectory = Dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(script);
        info.ArgumentList.Add(file);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start (test.sh installs nodejs)");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        Directory.Delete(dir, recursive: true);
        if (process.ExitCode != 0) throw new InvalidOperationException($"the oracle {script} failed: {error.Result}");
        return JsonSerializer.Deserialize<T>(output.Result, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
    }
}
