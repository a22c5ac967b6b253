using System.CommandLine;

namespace MoeMesh.Cli;

/// <summary>An option declared with <see cref="CommandLine.Add{T}"/>: its text on the command line or in its MOEMESH_ variable, and how to read it.</summary>
public sealed class CliOption<T> : ICliOption
{
    private readonly Option<string> _option;
    private readonly Func<string, T> _parse;
    private readonly T _default;

    internal CliOption(Option<string> option, string variable, Func<string, T> parse, T defaultValue)
    {
        _option = option;
        Variable = variable;
        _parse = parse;
        _default = defaultValue;
    }

    /// <summary>The environment variable that sets it when the command line does not.</summary>
    public string Variable { get; }

    /// <summary>The command line's value, else the variable's, else the default (all checked by <see cref="CommandLine.Parse"/>).</summary>
    internal T Value(ParseResult result, Func<string, string?> environment) =>
        Text(result, environment) is { } text ? _parse(text.Trim()) : _default;

    string? ICliOption.CheckVariable(ParseResult result, Func<string, string?> environment)
    {
        if (result.GetResult(_option) is { Implicit: false } || environment(Variable) is not { } text) return null;
        try
        {
            _parse(text.Trim());
            return null;
        }
        catch (FormatException e)
        {
            return $"{Variable}: {e.Message}, got '{text}'";
        }
    }

    private string? Text(ParseResult result, Func<string, string?> environment) =>
        result.GetResult(_option) is { Implicit: false } given ? given.Tokens[^1].Value : environment(Variable);
}

/// <summary>What the parser needs of every option, whatever its type.</summary>
internal interface ICliOption
{
    /// <summary>The error of the option's variable when the command line does not give it and the variable's value is malformed.</summary>
    string? CheckVariable(ParseResult result, Func<string, string?> environment);
}
