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
        var root = bin;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Platform.sln"))) root = root.Parent;
        if (root is null) throw new DirectoryNotFoundException($"no Platform.sln above {bin.FullName}");
        var dll = Path.Combine(root.FullName, folder, "bin", configuration, tfm, $"{assembly}.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"build {folder} first", dll);
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
}
