using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace MoeMesh.Cli;

/// <summary>
/// The one command-line parser of every MoeMesh program, on System.CommandLine. Each option is also read
/// from a MOEMESH_ environment variable (--max-queue from MOEMESH_MAX_QUEUE) when the command line does not
/// give it; the command line wins. An unknown option, a stray argument or a malformed value, on the command
/// line or in a variable, is an error that names it (<see cref="CommandLineException"/>); nothing is ignored.
/// </summary>
public sealed class CommandLine
{
    public const string EnvironmentPrefix = "MOEMESH_";

    private readonly RootCommand _root;
    private readonly List<ICliOption> _options = [];
    private readonly string _program;

    public CommandLine(string program, string description)
    {
        _program = program;
        _root = new RootCommand(description) { TreatUnmatchedTokensAsErrors = true };
        for (var i = _root.Options.Count - 1; i >= 0; i--)
            if (_root.Options[i] is VersionOption) _root.Options.RemoveAt(i);
    }

    /// <summary>The environment variable that can also set <paramref name="option"/> ("--max-queue" → MOEMESH_MAX_QUEUE).</summary>
    public static string VariableOf(string option) => EnvironmentPrefix + option.TrimStart('-').Replace('-', '_').ToUpperInvariant();

    /// <summary>
    /// Declares an option taking one value. <paramref name="parse"/> turns the text into the value or throws
    /// <see cref="FormatException"/> with what is expected; it checks command-line and environment values alike.
    /// </summary>
    public CliOption<T> Add<T>(string name, string valueName, string help, Func<string, T> parse, T defaultValue)
    {
        var variable = VariableOf(name);
        // Every option is read as text (one value, whatever T is: "--prefix-caching off" is not a bare flag) and
        // converted by our own parser, so that the command line and the variables give the same errors.
        var option = new Option<string>(name)
        {
            Description = $"{help} [env {variable}]",
            HelpName = valueName,
            Arity = ArgumentArity.ExactlyOne,
        };
        option.Validators.Add(r =>
        {
            if (r.Implicit || r.Tokens.Count == 0) return;
            Check(r, r.Tokens[^1].Value, name, parse);
        });
        _root.Options.Add(option);
        var declared = new CliOption<T>(option, variable, parse, defaultValue);
        _options.Add(declared);
        return declared;
    }

    private static void Check<T>(OptionResult r, string text, string source, Func<string, T> parse)
    {
        try
        {
            parse(text.Trim());
        }
        catch (FormatException e)
        {
            r.AddError($"{source}: {e.Message}, got '{text}'");
        }
    }

    /// <summary>Parses <paramref name="args"/> with options read from <paramref name="environment"/> (default: the process's).</summary>
    public ParsedCommandLine Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        var env = environment ?? Environment.GetEnvironmentVariable;
        // No response files: an argument starting with '@' is a value like any other.
        var result = _root.Parse(args.ToArray(), new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (result.Action is HelpAction) return new ParsedCommandLine(result, env, helpRequested: true);
        var errors = result.Errors.Select(e => e.Message).ToList();
        foreach (var token in result.UnmatchedTokens.Where(t => t.StartsWith("--", StringComparison.Ordinal)))
            if (Suggest(token) is { } near) errors.Add($"'{token}' is not an option; did you mean {near}?");
        // Variables of options the command line does not give are checked here, with the same parsers.
        errors.AddRange(_options.Select(o => o.CheckVariable(result, env)).OfType<string>());
        if (errors.Count > 0) throw new CommandLineException(_program, string.Join(Environment.NewLine, errors.Distinct()), Usage());
        return new ParsedCommandLine(result, env, helpRequested: false);
    }

    /// <summary>The declared option closest to a mistyped one (a prefix of it, or at most two edits away); null if none is close.</summary>
    private string? Suggest(string token) =>
        _root.Options.Select(o => o.Name).Where(n => n.StartsWith("--", StringComparison.Ordinal))
            .Select(n => (Name: n, Distance: n.StartsWith(token, StringComparison.Ordinal) || token.StartsWith(n, StringComparison.Ordinal) ? 0 : Edits(n, token)))
            .Where(c => c.Distance <= 2).OrderBy(c => c.Distance).Select(c => c.Name).FirstOrDefault();

    private static int Edits(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var diagonal = row[0];
            row[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    /// <summary>An error found after parsing (a required option missing, values that do not fit together).</summary>
    public CommandLineException Error(string message) => new(_program, message, Usage());

    /// <summary>The --help text.</summary>
    public string Usage()
    {
        var text = new StringWriter();
        _root.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = text, Error = TextWriter.Null });
        return text.ToString().Replace(AppName(), _program);
    }

    private static string AppName() => Path.GetFileNameWithoutExtension(Environment.GetCommandLineArgs()[0]);
}
