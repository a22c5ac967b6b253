using System.CommandLine;

namespace MoeMesh.Cli;

/// <summary>The values of a parsed command line (command line first, then MOEMESH_ variables, then defaults).</summary>
public sealed class ParsedCommandLine
{
    private readonly ParseResult _result;
    private readonly Func<string, string?> _environment;

    internal ParsedCommandLine(ParseResult result, Func<string, string?> environment, bool helpRequested)
    {
        _result = result;
        _environment = environment;
        HelpRequested = helpRequested;
    }

    /// <summary>--help (or -h, -?) was given: print the usage and exit 0.</summary>
    public bool HelpRequested { get; }

    public T Get<T>(CliOption<T> option) => option.Value(_result, _environment);
}
