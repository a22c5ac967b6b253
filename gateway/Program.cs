using MoeMesh.Cli;
using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Gateway.Hosting;

if (args is [ExportGgufCommand.Name, .. var exportArgs]) return ExportGgufCommand.Run(exportArgs);
try
{
    if (GatewayOptions.Parse(args) is not { } options)
    {
        Console.WriteLine(GatewayOptions.Usage());
        return 0;
    }
    var app = GatewayApp.Build(options);
    // Taken before running: RunAsync disposes the services when the host stops.
    var exitCode = GatewayApp.ExitCodeOnceStopped(app);
    await app.RunAsync();
    return exitCode();
}
catch (CommandLineException e)
{
    return e.Report();
}
catch (Exception e) when (e is ArgumentException or k8s.Exceptions.KubeConfigException or ModelConfigException or CheckpointException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException)
{
    Console.Error.WriteLine($"moemesh-gateway: {e.Message}");
    return 2;
}
