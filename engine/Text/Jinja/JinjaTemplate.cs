using System.Globalization;
using System.Text;

namespace MoeMesh.Engine.Text.Jinja;

/// <summary>
/// A Jinja template of the subset chat templates use, parsed once and rendered per request as Hugging Face renders it:
/// trim_blocks and lstrip_blocks on, and the globals transformers adds (raise_exception, strftime_now, namespace, range).
/// </summary>
internal sealed class JinjaTemplate
{
    private const int MaxRange = 100_000;
    private readonly List<Node> _nodes;

    private JinjaTemplate(List<Node> nodes) => _nodes = nodes;

    /// <exception cref="JinjaException">The template is not valid, or uses a statement outside the subset.</exception>
    public static JinjaTemplate Parse(string source) => new(JinjaParser.Parse(source));

    /// <summary>Renders with the given variables; <paramref name="now"/> is the time strftime_now formats.</summary>
    /// <exception cref="JinjaException">The template failed (raise_exception, a type error, a limit).</exception>
    public JinjaString Render(IReadOnlyDictionary<string, object?> variables, DateTimeOffset now)
    {
        var scope = new JinjaScope(Globals(now));
        foreach (var (name, value) in variables) scope.Set(name, value);
        try
        {
            return new JinjaInterpreter().Render(_nodes, scope);
        }
        catch (OverflowException)
        {
            throw new JinjaException("arithmetic overflow");
        }
    }

    private static JinjaScope Globals(DateTimeOffset now)
    {
        var globals = new JinjaScope(null);
        globals.Set("raise_exception", (JinjaFunction)((args, _) =>
            throw new RaisedException(args.Count > 0 ? JinjaValues.Str(args[0]).Text : "the chat template raised an exception")));
        globals.Set("namespace", (JinjaFunction)((args, kwargs) =>
        {
            var values = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
            if (args.Count > 0 && args[0] is OrderedDictionary<string, object?> initial)
                foreach (var (k, v) in initial) values[k] = v;
            foreach (var (k, v) in kwargs) values[k] = v;
            return new JinjaNamespace(values);
        }));
        globals.Set("range", (JinjaFunction)((args, _) => Range(args)));
        globals.Set("strftime_now", (JinjaFunction)((args, _) =>
            JinjaString.Template(Strftime(args.Count > 0 && args[0] is JinjaString f ? f.Text : throw new JinjaException("strftime_now needs a format"), now))));
        globals.Set("dict", (JinjaFunction)((_, kwargs) =>
        {
            var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (k, v) in kwargs) dict[k] = v;
            return dict;
        }));
        return globals;
    }

    private static List<object?> Range(List<object?> args)
    {
        var n = args.Select(a => a as long? ?? throw new JinjaException("range() needs integers")).ToArray();
        var (start, stop, step) = n.Length switch
        {
            1 => (0L, n[0], 1L),
            2 => (n[0], n[1], 1L),
            3 => (n[0], n[1], n[2]),
            _ => throw new JinjaException("range() takes one to three integers"),
        };
        if (step == 0) throw new JinjaException("range() step cannot be zero");
        var items = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (items.Count == MaxRange) throw new JinjaException($"range() longer than {MaxRange:N0}");
            items.Add(i);
        }
        return items;
    }

    /// <summary>Python's strftime for the directives chat templates use (dates in system prompts).</summary>
    internal static string Strftime(string format, DateTimeOffset t)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            var d = format[++i];
            text.Append(d switch
            {
                'Y' => t.Year.ToString("D4", c),
                'y' => (t.Year % 100).ToString("D2", c),
                'm' => t.Month.ToString("D2", c),
                'd' => t.Day.ToString("D2", c),
                '-' when i + 1 < format.Length && format[i + 1] == 'd' => (++i > 0 ? t.Day : 0).ToString(c),
                'B' => t.ToString("MMMM", c),
                'b' or 'h' => t.ToString("MMM", c),
                'A' => t.ToString("dddd", c),
                'a' => t.ToString("ddd", c),
                'H' => t.Hour.ToString("D2", c),
                'I' => ((t.Hour + 11) % 12 + 1).ToString("D2", c),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'M' => t.Minute.ToString("D2", c),
                'S' => t.Second.ToString("D2", c),
                'j' => t.DayOfYear.ToString("D3", c),
                'Z' => t.Offset == TimeSpan.Zero ? "UTC" : "",
                'z' => (t.Offset < TimeSpan.Zero ? "-" : "+") + t.Offset.ToString("hhmm", c),
                '%' => "%",
                _ => "%" + d,
            });
        }
        return text.ToString();
    }
}
