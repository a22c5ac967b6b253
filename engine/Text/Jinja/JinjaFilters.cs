using System.Globalization;
using System.Net;

namespace MoeMesh.Engine.Text.Jinja;

/// <summary>The filters (value | name) and tests (value is name) of Jinja that chat templates use.</summary>
internal static class JinjaFilters
{
    /// <summary>The filters <see cref="Apply"/> knows; the parser refuses others, so that a template fails when it loads.</summary>
    public static readonly IReadOnlySet<string> FilterNames = new HashSet<string>(
    [
        "tojson", "trim", "length", "count", "join", "default", "d", "items", "dictsort", "list", "first", "last", "reverse",
        "upper", "lower", "title", "capitalize", "string", "safe", "escape", "e", "replace", "int", "float", "abs", "round",
        "unique", "sort", "min", "max", "select", "reject", "selectattr", "rejectattr", "map", "indent",
    ]);

    /// <summary>The tests <see cref="Test"/> knows.</summary>
    public static readonly IReadOnlySet<string> TestNames = new HashSet<string>(
    [
        "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true", "false", "mapping",
        "iterable", "sequence", "callable", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt",
        "greaterthan", ">", "ge", ">=", "in", "sameas", "odd", "even", "divisibleby", "lower", "upper",
    ]);

    public static object? Apply(string name, object? v, List<object?> args, Dictionary<string, object?> kwargs)
    {
        object? Arg(int i, string key, object? fallback = null) =>
            i >= 0 && i < args.Count ? args[i] : kwargs.TryGetValue(key, out var x) ? x : fallback;

        switch (name)
        {
            case "tojson":
                return ToJson(v, Arg(0, "indent"), Arg(-1, "sort_keys", false), Arg(-1, "separators"));
            case "trim":
                return JinjaStringMethods.Strip(AsString(v, name), (Arg(0, "chars") as JinjaString)?.Text, left: true, right: true);
            case "length" or "count":
                return v switch
                {
                    JinjaString s => (long)s.Text.Length,
                    List<object?> l => (long)l.Count,
                    OrderedDictionary<string, object?> d => (long)d.Count,
                    JinjaNamespace ns => (long)ns.Values.Count,
                    JinjaUndefined => 0L,
                    _ => throw new JinjaException($"{JinjaValues.TypeName(v)} has no length"),
                };
            case "join":
            {
                var items = JinjaInterpreter.Iterate(v);
                if (Arg(1, "attribute") is JinjaString attribute) items = items.Select(x => JinjaMembers.Attribute(x, attribute.Text));
                return JinjaStringMethods.Join(items, Arg(0, "d") as JinjaString ?? JinjaString.Empty);
            }
            case "default" or "d":
            {
                var useIfFalse = JinjaValues.Truthy(Arg(1, "boolean", false));
                return v is JinjaUndefined || (useIfFalse && !JinjaValues.Truthy(v)) ? Arg(0, "default_value", JinjaString.Empty) : v;
            }
            case "items":
                return v is JinjaUndefined ? new List<object?>() : JinjaMembers.Attribute(AsDict(v, name), "items") is JinjaFunction f ? f([], []) : null;
            case "dictsort":
            {
                var dict = AsDict(v, name);
                return dict.OrderBy(p => p.Key, StringComparer.OrdinalIgnoreCase)
                    .Select(p => (object?)new List<object?> { JinjaValues.KeyString(dict, p.Key), p.Value }).ToList();
            }
            case "list":
                return JinjaInterpreter.Iterate(v).ToList();
            case "first":
                return JinjaInterpreter.Iterate(v).DefaultIfEmpty(JinjaUndefined.Value).First();
            case "last":
                return JinjaInterpreter.Iterate(v).DefaultIfEmpty(JinjaUndefined.Value).Last();
            case "reverse":
                return v is JinjaString rs
                    ? JinjaMembers.Slice(rs, null, null, -1, -1)
                    : JinjaInterpreter.Iterate(v).Reverse().ToList();
            case "upper":
                return JinjaString.DerivedFrom(AsString(v, name).Text.ToUpperInvariant(), JinjaValues.HasContent(v));
            case "lower":
                return JinjaString.DerivedFrom(AsString(v, name).Text.ToLowerInvariant(), JinjaValues.HasContent(v));
            case "title":
                return JinjaString.DerivedFrom(JinjaStringMethods.Title(AsString(v, name).Text), JinjaValues.HasContent(v));
            case "capitalize":
                return JinjaString.DerivedFrom(JinjaStringMethods.Capitalize(AsString(v, name).Text), JinjaValues.HasContent(v));
            case "string":
                return JinjaValues.Str(v);
            case "safe":
                return v;
            case "escape" or "e":
                return JinjaString.DerivedFrom(WebUtility.HtmlEncode(JinjaValues.Str(v).Text), JinjaValues.HasContent(v));
            case "replace":
                return JinjaStringMethods.Replace(AsString(v, name), Arg(0, "old"), Arg(1, "new"), Arg(2, "count") as long? ?? -1);
            case "int":
                return ToInt(v, Arg(0, "default", 0L));
            case "float":
                return ToFloat(v, Arg(0, "default", 0.0));
            case "abs":
                return v switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), _ => throw new JinjaException($"abs needs a number, got {JinjaValues.TypeName(v)}") };
            case "round":
            {
                var digits = (int)Math.Clamp(Arg(0, "precision", 0L) as long? ?? 0, -15, 15);
                var scale = Math.Pow(10, digits);
                return digits >= 0
                    ? Math.Round(JinjaValues.ToDouble(v), digits, MidpointRounding.AwayFromZero)
                    : Math.Round(JinjaValues.ToDouble(v) * scale, MidpointRounding.AwayFromZero) / scale;
            }
            case "unique":
            {
                var seen = new List<object?>();
                foreach (var x in JinjaInterpreter.Iterate(v)) if (!seen.Any(y => JinjaValues.Equals(x, y))) seen.Add(x);
                return seen;
            }
            case "sort":
                return Sort(v, JinjaValues.Truthy(Arg(0, "reverse", false)), Arg(2, "attribute") as JinjaString);
            case "min" or "max":
            {
                var sorted = Sort(v, name == "max", null);
                return sorted.Count > 0 ? sorted[0] : JinjaUndefined.Value;
            }
            case "selectattr" or "rejectattr":
            {
                var attribute = Arg(0, "attribute") as JinjaString ?? throw new JinjaException("needs an attribute name");
                var test = args.Count > 1 ? (args[1] as JinjaString)?.Text ?? throw new JinjaException("the test must be a name") : null;
                return JinjaInterpreter.Iterate(v).Where(x =>
                {
                    var value = JinjaMembers.Attribute(x, attribute.Text);
                    var pass = test is null ? JinjaValues.Truthy(value) : Test(test, value, args.Skip(2).ToList(), -1);
                    return pass == (name == "selectattr");
                }).ToList();
            }
            case "select" or "reject":
            {
                var test = args.Count > 0 ? (args[0] as JinjaString)?.Text ?? throw new JinjaException("the test must be a name") : null;
                return JinjaInterpreter.Iterate(v).Where(x =>
                    (test is null ? JinjaValues.Truthy(x) : Test(test, x, args.Skip(1).ToList(), -1)) == (name == "select")).ToList();
            }
            case "map":
            {
                if (Arg(-1, "attribute") is JinjaString attribute)
                    return JinjaInterpreter.Iterate(v).Select(x => JinjaMembers.Attribute(x, attribute.Text) is JinjaUndefined && kwargs.TryGetValue("default", out var d) ? d : JinjaMembers.Attribute(x, attribute.Text)).ToList();
                if (args.Count > 0 && args[0] is JinjaString filter)
                    return JinjaInterpreter.Iterate(v).Select(x => Apply(filter.Text, x, args.Skip(1).ToList(), [])).ToList();
                throw new JinjaException("map needs a filter name or attribute=");
            }
            case "indent":
                return Indent(AsString(v, name), Arg(0, "width", 4L), JinjaValues.Truthy(Arg(1, "first", false)), JinjaValues.Truthy(Arg(2, "blank", false)));
            default:
                throw new JinjaException($"the filter '{name}' is not supported");
        }
    }

    private static JinjaString AsString(object? v, string filter) =>
        v as JinjaString ?? throw new JinjaException($"'{filter}' needs a string, got {JinjaValues.TypeName(v)}");

    private static OrderedDictionary<string, object?> AsDict(object? v, string filter) =>
        v as OrderedDictionary<string, object?> ?? throw new JinjaException($"'{filter}' needs a dict, got {JinjaValues.TypeName(v)}");

    private static JinjaString ToJson(object? v, object? indent, object? sortKeys, object? separators)
    {
        var width = indent switch
        {
            null => (int?)null,
            long l => (int)Math.Clamp(l, 0, 64),
            _ => throw new JinjaException("indent must be an integer"),
        };
        (string, string)? seps = separators is List<object?> { Count: 2 } pair && pair[0] is JinjaString a && pair[1] is JinjaString b
            ? (a.Text, b.Text) : null;
        var json = JinjaValues.ToJson(v, width, JinjaValues.Truthy(sortKeys), seps);
        return JinjaString.DerivedFrom(json, JinjaValues.HasContent(v));
    }

    private static object? ToInt(object? v, object? fallback) => v switch
    {
        long l => l,
        double d => (long)Math.Truncate(d),
        bool b => b ? 1L : 0L,
        JinjaString s when long.TryParse(s.Text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l) => l,
        JinjaString s when double.TryParse(s.Text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => (long)Math.Truncate(d),
        _ => fallback,
    };

    private static object? ToFloat(object? v, object? fallback) => v switch
    {
        long l => (double)l,
        double d => d,
        bool b => b ? 1.0 : 0.0,
        JinjaString s when double.TryParse(s.Text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        _ => fallback,
    };

    private static List<object?> Sort(object? v, bool reverse, JinjaString? attribute)
    {
        var items = JinjaInterpreter.Iterate(v).ToList();
        object? Key(object? x) => attribute is null ? x : JinjaMembers.Attribute(x, attribute.Text);
        int Compare(object? a, object? b) => (Key(a), Key(b)) switch
        {
            (JinjaString x, JinjaString y) => string.Compare(x.Text, y.Text, StringComparison.OrdinalIgnoreCase),
            (long or double or bool, long or double or bool) => JinjaValues.ToDouble(Key(a)).CompareTo(JinjaValues.ToDouble(Key(b))),
            var (x, y) => throw new JinjaException($"cannot sort {JinjaValues.TypeName(x)} with {JinjaValues.TypeName(y)}"),
        };
        List<object?> sorted;
        try
        {
            sorted = items.Order(Comparer<object?>.Create(Compare)).ToList();
        }
        catch (InvalidOperationException e) when (e.InnerException is JinjaException inner)
        {
            throw inner;
        }
        if (reverse) sorted.Reverse();
        return sorted;
    }

    private static JinjaString Indent(JinjaString s, object? width, bool first, bool blank)
    {
        var pad = JinjaString.Template(width is JinjaString w ? w.Text : new string(' ', (int)Math.Clamp(width as long? ?? 4, 0, 256)));
        var lines = JinjaStringMethods.Split(s, JinjaString.Template("\n"), -1).Cast<JinjaString>().ToList();
        var result = new JinjaString.Builder();
        for (var i = 0; i < lines.Count; i++)
        {
            if (i > 0) result.Append(JinjaString.Template("\n"));
            if ((i > 0 || first) && (blank || lines[i].Text.Length > 0)) result.Append(pad);
            result.Append(lines[i]);
        }
        return result.ToJinjaString();
    }

    /// <summary>value is name(args).</summary>
    public static bool Test(string name, object? v, List<object?> args, int position)
    {
        object? Arg() => args.Count > 0 ? args[0] : throw new JinjaException($"the test '{name}' needs an argument", position);
        return name switch
        {
            "defined" => v is not JinjaUndefined,
            "undefined" => v is JinjaUndefined,
            "none" => v is null,
            "string" => v is JinjaString,
            "number" => v is long or double,
            "integer" => v is long,
            "float" => v is double,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "mapping" => v is OrderedDictionary<string, object?>,
            "iterable" => v is List<object?> or JinjaString or OrderedDictionary<string, object?>,
            "sequence" => v is List<object?> or JinjaString or OrderedDictionary<string, object?>,
            "callable" => v is JinjaFunction,
            "eq" or "equalto" or "==" => JinjaValues.Equals(v, Arg()),
            "ne" or "!=" => !JinjaValues.Equals(v, Arg()),
            "lt" or "lessthan" or "<" => (bool)JinjaOperators.Apply("<", v, Arg())!,
            "le" or "<=" => (bool)JinjaOperators.Apply("<=", v, Arg())!,
            "gt" or "greaterthan" or ">" => (bool)JinjaOperators.Apply(">", v, Arg())!,
            "ge" or ">=" => (bool)JinjaOperators.Apply(">=", v, Arg())!,
            "in" => (bool)JinjaOperators.Apply("in", v, Arg())!,
            "sameas" => ReferenceEquals(v, Arg()) || (v is null && Arg() is null) || (v is bool a && Arg() is bool b && a == b),
            "odd" => v is long l ? l % 2 != 0 : throw new JinjaException("odd needs an integer", position),
            "even" => v is long e ? e % 2 == 0 : throw new JinjaException("even needs an integer", position),
            "divisibleby" => v is long n && Arg() is long m && m != 0 ? n % m == 0 : throw new JinjaException("divisibleby needs integers", position),
            "lower" => v is JinjaString ls && ls.Text == ls.Text.ToLowerInvariant(),
            "upper" => v is JinjaString us && us.Text == us.Text.ToUpperInvariant(),
            _ => throw new JinjaException($"the test '{name}' is not supported", position),
        };
    }
}
