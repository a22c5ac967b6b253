using MoeMesh.Cli;
using MoeMesh.Operator.Crd;

// The MoeDeployment operator (group moemesh.dev, version v1alpha1). `moemesh-operator crd` prints the
// CustomResourceDefinition generated from the C# types; the controller itself is being built.
if (args is ["crd"])
{
    Console.Write(CrdGenerator.Yaml());
    return 0;
}
var cli = new CommandLine("moemesh-operator", "Reconciles MoeDeployment resources (moemesh.dev/v1alpha1). 'moemesh-operator crd' prints the CRD.");
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
Console.Error.WriteLine("moemesh-operator: the controller is not built yet; 'moemesh-operator crd' prints the CRD.");
return 2;
