namespace MoeMesh.Cli;

/// <summary>A command line or MOEMESH_ variable that cannot be used; the message names it, <see cref="Usage"/> says what is expected.</summary>
public sealed class CommandLineException(string program, string message, string usage) : ArgumentException(message)
{
    public string Program { get; } = program;
    public string Usage { get; } = usage;

    /// <summary>Prints the error and the usage to stderr; returns the exit code for a usage error (2).</summary>
    public int Report()
    {
        Console.Error.WriteLine($"{Program}: {Message}");
        Console.Error.WriteLine();
        Console.Error.WriteLine(Usage);
        return 2;
    }
}
