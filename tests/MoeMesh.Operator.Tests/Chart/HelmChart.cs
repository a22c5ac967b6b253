using System.Diagnostics;
using System.Text.Json.Nodes;

namespace MoeMesh.Operator.Tests.Chart;

/// <summary>
/// The chart in charts/moemesh rendered as `helm template` renders it: by tests/chart-render, a Go program on
/// text/template and sprig (the engine Helm uses), built once per test run (GOPATH mode, Debian's Go packages).
/// </summary>
public static class HelmChart
{
    public static string Dir => Path.Combine(Programs.RepositoryRoot(), "charts", "moemesh");

    /// <summary>The value files the chart tests render with: none (the defaults) and each of charts/moemesh/ci.</summary>
    public static string[] ScenarioNames() => ["default", .. Directory.GetFiles(Path.Combine(Dir, "ci"), "*-values.yaml").Select(f => Path.GetFileName(f)).Order()];

    public static TheoryData<string> Scenarios() => new(ScenarioNames());

    private static readonly Lazy<string> Renderer = new(Build);

    private static string Build()
    {
        var output = Path.Combine(Directory.CreateTempSubdirectory("moemesh-chart-render-").FullName, "chart-render");
        var (code, _, error) = Run("go", ["build", "-o", output, "main.go"], Path.Combine(Programs.RepositoryRoot(), "tests", "chart-render"), GoEnvironment());
        if (code != 0) throw new InvalidOperationException($"building tests/chart-render failed (test.sh installs golang-go and the sprig and yaml.v3 packages): {error}");
        return output;
    }

    private static Dictionary<string, string> GoEnvironment() => new() { ["GO111MODULE"] = "off", ["GOPATH"] = "/usr/share/gocode", ["GOFLAGS"] = "" };

    /// <summary>The rendered manifests for a scenario ("default" or a file of ci/), the namespace "llm" and the release "moemesh".</summary>
    public static string Render(string scenario, params string[] extra) => RenderRaw([.. ValueArgs(scenario), "--namespace", "llm", "--api-versions", "monitoring.coreos.com/v1", .. extra]);

    /// <summary>The renderer's output for these arguments (after the chart folder); throws with its error when it fails.</summary>
    public static string RenderRaw(params string[] args)
    {
        var (code, output, error) = Run(Renderer.Value, [Dir, .. args], Dir, []);
        if (code != 0) throw new ChartRenderException(error.Trim());
        return output;
    }

    public static string[] ValueArgs(string scenario) => scenario == "default" ? [] : ["-f", Path.Combine(Dir, "ci", scenario)];

    /// <summary>The rendered documents of a scenario, as JSON.</summary>
    public static IReadOnlyList<JsonObject> Documents(string scenario) => Yaml.Documents(Render(scenario));

    private static (int Code, string Output, string Error) Run(string file, string[] args, string dir, Dictionary<string, string> environment)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, output.Result, error.Result);
    }
}

/// <summary>The chart refused to render (a `required` or `fail`, a template error): the message says why.</summary>
public sealed class ChartRenderException(string message) : Exception(message);
