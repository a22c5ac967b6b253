using MoeMesh.Cli;
using MoeMesh.Gateway.Hosting;

namespace MoeMesh.Gateway.Tests.Hosting;

/// <summary>Every program parses its command line and MOEMESH_ variables with the one parser: nothing unknown or malformed passes.</summary>
public sealed class CommandLineTests
{
    private static Func<string, string?> Environment(params (string Name, string Value)[] variables) =>
        name => variables.FirstOrDefault(v => v.Name == name).Value;

    [Theory]
    [InlineData("gateway", "moemesh-gateway", "--expert-nodes")]
    [InlineData("expert-node", "moemesh-expert-node", "--max-dispatch-tokens")]
    [InlineData("operator", "moemesh-operator", "--help")]
    public async Task UnknownOption_IsAnErrorNamingIt_WithTheUsage_AndExitCode2(string folder, string assembly, string listed)
    {
        var (exit, stdout, stderr) = await Programs.RunAsync(Programs.Dll(folder, assembly), ["--bogus", "1"]);
        Assert.Equal(2, exit);
        Assert.Contains("'--bogus'", stderr);
        Assert.Contains("Usage:", stderr);
        Assert.Contains(listed, stderr);
        Assert.Equal("", stdout);

        var help = await Programs.RunAsync(Programs.Dll(folder, assembly), ["--help"]);
        Assert.Equal(0, help.ExitCode);
        Assert.Contains(listed, help.Stdout);
    }

    [Fact]
    public async Task MistypedGatewayOption_DoesNotServe_AndSuggestsTheRightOne()
    {
        // Before, --expert-node (for --expert-nodes) was ignored and every expert ran in-process.
        var (exit, _, stderr) = await Programs.RunAsync(Programs.Dll("gateway", "moemesh-gateway"), ["--expert-node", "http://127.0.0.1:9"]);
        Assert.Equal(2, exit);
        Assert.Contains("did you mean --expert-nodes?", stderr);
    }

    [Fact]
    public async Task MalformedVariable_IsAnErrorNamingIt()
    {
        var (exit, _, stderr) = await Programs.RunAsync(Programs.Dll("gateway", "moemesh-gateway"), [], new Dictionary<string, string> { ["MOEMESH_MAX_QUEUE"] = "lots" });
        Assert.Equal(2, exit);
        Assert.Contains("MOEMESH_MAX_QUEUE: expected a positive integer, got 'lots'", stderr);
    }

    [Theory]
    [InlineData(new[] { "--max-queue", "abc" }, "--max-queue: expected a positive integer, got 'abc'")]
    [InlineData(new[] { "--max-queue", "0" }, "--max-queue: expected a positive integer")]
    [InlineData(new[] { "--max-queue" }, "--max-queue")]
    [InlineData(new[] { "--prefix-caching", "maybe" }, "--prefix-caching: expected on or off")]
    [InlineData(new[] { "--device", "gpu" }, "--device: expected cpu, cuda or cuda:N")]
    [InlineData(new[] { "--kv-store", "redis:/cache" }, "--kv-store: expected memory, redis://")]
    [InlineData(new[] { "--kv-store", "redis://cache:6379/db1" }, "--kv-store: '/db1': the database is a number")]
    [InlineData(new[] { "--kv-store", "redis://cache:6379", "--prefix-caching", "off" }, "--kv-store shares the prefix cache's pages between gateways: it needs --prefix-caching on")]
    [InlineData(new[] { "--expert-nodes", "http://user:pw@node:9000" }, "credentials")]
    [InlineData(new[] { "--special-tokens-in-content", "yes" }, "expected plain or special")]
    [InlineData(new[] { "stray" }, "'stray'")]
    public void MalformedGatewayOption_IsAnErrorNamingIt(string[] args, string message)
    {
        var e = Assert.Throws<CommandLineException>(() => GatewayOptions.Parse(args, Environment()));
        Assert.Contains(message, e.Message);
        Assert.Contains("--max-queue", e.Usage);
    }

    [Fact]
    public void Variables_SetOptions_AndTheCommandLineWins()
    {
        var env = Environment(("MOEMESH_MAX_QUEUE", "7"), ("MOEMESH_PREFIX_CACHING", "off"), ("MOEMESH_API_KEY", "k1"));
        var fromVariables = GatewayOptions.Parse([], env)!;
        Assert.Equal((7, false, "k1"), (fromVariables.MaxQueue, fromVariables.PrefixCaching, fromVariables.ApiKey));
        var both = GatewayOptions.Parse(["--max-queue", "9", "--api-key=k2"], env)!;
        Assert.Equal((9, false, "k2"), (both.MaxQueue, both.PrefixCaching, both.ApiKey));
        // A value that starts with '@' is a value, not a response file to expand.
        Assert.Equal("@team", GatewayOptions.Parse(["--served-model-name", "@team"], env)!.ServedModelName);
        Assert.Null(GatewayOptions.Parse(["--help"], env));
    }

    [Fact]
    public async Task ExportGguf_WritesAGgufFile_AndRefusesBadArguments()
    {
        var dir = Path.Combine(Path.GetTempPath(), "moemesh-tests", $"export-{System.Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model.safetensors"))) Engine.Demo.DemoModel.Write(dir, Engine.Demo.DemoShape.Tiny, 7, Engine.Demo.DemoModel.WeightFormat.BF16);
        var output = Path.Combine(dir, "demo.gguf");
        var gateway = Programs.Dll("gateway", "moemesh-gateway");

        var (exit, stdout, stderr) = await Programs.RunAsync(gateway, ["export-gguf", "--model", dir, "--output", output, "--type", "bf16"]);
        Assert.True(exit == 0, stderr);
        Assert.Contains("wrote", stdout);
        using (var file = new BinaryReader(File.OpenRead(output)))
        {
            Assert.Equal("GGUF"u8.ToArray(), file.ReadBytes(4));
            Assert.Equal(3u, file.ReadUInt32());
        }

        var missing = await Programs.RunAsync(gateway, ["export-gguf", "--model", dir]);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--output is required", missing.Stderr);
        var badType = await Programs.RunAsync(gateway, ["export-gguf", "--model", dir, "--output", output, "--type", "f8"]);
        Assert.Equal(2, badType.ExitCode);
        Assert.Contains("expected f32, f16 or bf16", badType.Stderr);
        var noModel = await Programs.RunAsync(gateway, ["export-gguf", "--model", Path.Combine(dir, "absent"), "--output", output + ".x"]);
        Assert.Equal(2, noModel.ExitCode);
        Assert.False(File.Exists(output + ".x"));
    }
}
