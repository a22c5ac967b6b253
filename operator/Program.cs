using MoeMesh.Cli;

// The MoeDeployment operator (group moemesh.dev, version v1alpha1) is built in the operator release;
// this entry point fixes the project's place in the solution, its command name and its command line.
var cli = new CommandLine("moemesh-operator", "Reconciles MoeDeployment resources (moemesh.dev/v1alpha1).");
try
{
    if (cli.Parse(args).HelpRequested)
    {
        Console.WriteLine(cli.Usage());
        return 0;
    }
}
catch (CommandLineException e)
{
    return e.Report();
}
Console.Error.WriteLine("moemesh-operator: the controller ships in the operator release; nothing to run yet.");
return 2;
