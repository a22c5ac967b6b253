using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Gateway.Hosting;

if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine(GatewayApp.Usage());
    return 0;
}
try
{
    var app = GatewayApp.Build(args);
    app.Run();
    return 0;
}
catch (Exception e) when (e is ArgumentException or ModelConfigException or CheckpointException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException)
{
    Console.Error.WriteLine($"moemesh-gateway: {e.Message}");
    return 2;
}
