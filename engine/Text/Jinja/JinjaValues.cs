using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MoeMesh.Engine.Text.Jinja;

/// <summary>A name the template reads that was never set: renders as nothing, is false, and has no attributes.</summary>
internal sealed class JinjaUndefined
{
    public static readonly JinjaUndefined Value = new();

    private JinjaUndefined()
    {
    }
}

/// <summary>The object namespace() makes: attributes that a set statement inside a loop can change.</summary>
internal sealed class JinjaNamespace(OrderedDictionary<string, object?> values)
{
    public OrderedDictionary<string, object?> Values { get; } = values;
}

/// <summary>A dict that came from the request: its keys are caller data too.</summary>
internal sealed class JinjaDataDict() : OrderedDictionary<string, object?>(StringComparer.Ordinal);

/// <summary>A callable: a global function, a method bound to its value, or a macro.</summary>
internal delegate object? JinjaFunction(List<object?> args, Dictionary<string, object?> kwargs);

/// <summary>
/// The values a template computes with, as Python's Jinja has them: None (null), undefined, bool, long, double,
/// <see cref="JinjaString"/>, list (List of object), dict (ordered, string keys), namespace and callables.
/// </summary>
internal static class JinjaValues
{
    public static bool Truthy(object? v) => v switch
    {
        null or JinjaUndefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        JinjaString s => s.Text.Length > 0,
        List<object?> list => list.Count > 0,
        OrderedDictionary<string, object?> dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>What {{ value }} prints, as Python's Jinja prints it.</summary>
    public static JinjaString Str(object? v) => v switch
    {
        JinjaString s => s,
        JinjaUndefined => JinjaString.Empty,
        null => JinjaString.Template("None"),
        bool b => JinjaString.Template(b ? "True" : "False"),
        long l => JinjaString.Template(l.ToString(CultureInfo.InvariantCulture)),
        double d => JinjaString.Template(Float(d)),
        _ => JinjaString.DerivedFrom(Repr(v), HasContent(v)),
    };

    /// <summary>Python's repr of a float: the shortest digits that read back, fixed from 1e-4 up to 1e16, else with an exponent.</summary>
    public static string Float(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // The shortest round-trip digits and the decimal exponent, from .NET's "E" form of them.
        var e = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        var (mantissa, exponent) = e.Contains('E') ? (e[..e.IndexOf('E')], int.Parse(e[(e.IndexOf('E') + 1)..], CultureInfo.InvariantCulture)) : (e, 0);
        var point = mantissa.IndexOf('.');
        var digits = mantissa.Replace(".", "");
        var decimalExponent = (point < 0 ? mantissa.Length : point) - 1 + exponent;
        var lead = digits.TrimStart('0');
        decimalExponent -= digits.Length - lead.Length;
        digits = lead.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        var sign = d < 0 ? "-" : "";
        if (decimalExponent is >= -4 and < 16)
        {
            if (decimalExponent < 0) return $"{sign}0.{new string('0', -decimalExponent - 1)}{digits}";
            var whole = digits.Length > decimalExponent + 1 ? digits[..(decimalExponent + 1)] : digits.PadRight(decimalExponent + 1, '0');
            var fraction = digits.Length > decimalExponent + 1 ? digits[(decimalExponent + 1)..] : "0";
            return $"{sign}{whole}.{fraction}";
        }
        var rest = digits.Length > 1 ? "." + digits[1..] : "";
        return $"{sign}{digits[0]}{rest}e{(decimalExponent < 0 ? "-" : "+")}{Math.Abs(decimalExponent):D2}";
    }

    /// <summary>Python's repr of a value inside a printed list or dict.</summary>
    private static string Repr(object? v) => Repr(v, 0);

    private static string Repr(object? v, int depth)
    {
        if (depth > MaxNesting) throw new JinjaException($"a value nested deeper than {MaxNesting}");
        return v switch
        {
            JinjaString s => StringRepr(s.Text),
            List<object?> list => "[" + string.Join(", ", list.Select(x => Repr(x, depth + 1))) + "]",
            OrderedDictionary<string, object?> dict => "{" + string.Join(", ", dict.Select(p => $"{StringRepr(p.Key)}: {Repr(p.Value, depth + 1)}")) + "}",
            JinjaNamespace => "<Namespace>",
            JinjaFunction => "<function>",
            _ => Str(v).Text,
        };
    }

    /// <summary>Python's repr of a string: single quotes unless it holds one and no double quote; escapes for backslash and control characters.</summary>
    private static string StringRepr(string text)
    {
        var quote = text.Contains('\'') && !text.Contains('"') ? '"' : '\'';
        var b = new StringBuilder().Append(quote);
        foreach (var c in text)
        {
            b.Append(c switch
            {
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when c == quote => "\\" + c,
                _ when c < 0x20 || c == 0x7f => $"\\x{(int)c:x2}",
                _ => c.ToString(),
            });
        }
        return b.Append(quote).ToString();
    }

    /// <summary>Deepest nesting of lists and dicts that printing, JSON and the content check walk (a namespace may hold itself).</summary>
    public const int MaxNesting = 64;

    /// <summary>Whether any string inside the value (or a key of a dict from the request) is caller data.</summary>
    public static bool HasContent(object? v) => HasContent(v, 0);

    private static bool HasContent(object? v, int depth)
    {
        if (depth > MaxNesting) throw new JinjaException($"a value nested deeper than {MaxNesting}");
        return v switch
        {
            JinjaString s => s.HasContent,
            List<object?> list => list.Any(x => HasContent(x, depth + 1)),
            JinjaDataDict dict when dict.Count > 0 => true,
            OrderedDictionary<string, object?> dict => dict.Values.Any(x => HasContent(x, depth + 1)),
            JinjaNamespace ns => ns.Values.Values.Any(x => HasContent(x, depth + 1)),
            _ => false,
        };
    }

    /// <summary>A dict's key as a template string: caller data when the dict came from the request.</summary>
    public static JinjaString KeyString(OrderedDictionary<string, object?> dict, string key) =>
        dict is JinjaDataDict ? JinjaString.Data(key) : JinjaString.Template(key);

    public static string TypeName(object? v) => v switch
    {
        null => "none",
        JinjaUndefined => "undefined",
        bool => "boolean",
        long => "integer",
        double => "float",
        JinjaString => "string",
        List<object?> => "list",
        OrderedDictionary<string, object?> => "dict",
        JinjaNamespace => "namespace",
        JinjaFunction => "function",
        _ => v.GetType().Name,
    };

    public static new bool Equals(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (JinjaUndefined, JinjaUndefined) => true,
        (JinjaString x, JinjaString y) => x.Text == y.Text,
        (bool x, bool y) => x == y,
        (long or double, long or double) => ToDouble(a) == ToDouble(b),
        (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second)),
        (OrderedDictionary<string, object?> x, OrderedDictionary<string, object?> y) =>
            x.Count == y.Count && x.All(p => y.TryGetValue(p.Key, out var o) && Equals(p.Value, o)),
        _ => ReferenceEquals(a, b),
    };

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new JinjaException($"expected a number, got {TypeName(v)}"),
    };

    /// <summary>Converts JSON (a request's messages, tools, extra fields) to template values; every string counts as caller data.</summary>
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => JinjaString.Data(e.GetString()!),
        // As Python's json reads numbers: a fraction or exponent makes a float.
        JsonValueKind.Number => e.GetRawText().AsSpan().IndexOfAny(".eE") < 0 && e.TryGetInt64(out var l) ? (object)l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null => null,
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => ObjectFromJson(e),
        _ => JinjaUndefined.Value,
    };

    private static OrderedDictionary<string, object?> ObjectFromJson(JsonElement e)
    {
        var dict = new JinjaDataDict();
        foreach (var p in e.EnumerateObject()) dict[p.Name] = FromJson(p.Value);
        return dict;
    }

    /// <summary>The tojson filter as Hugging Face's chat templates have it: no HTML escaping, non-ASCII kept, Python's separators.</summary>
    public static string ToJson(object? v, int? indent, bool sortKeys = false, (string Item, string Key)? separators = null)
    {
        var sep = separators ?? (indent is not null ? (",", ": ") : (", ", ": "));
        var text = new StringBuilder();
        Write(v, 0);
        return text.ToString();

        void Write(object? value, int depth)
        {
            if (depth > MaxNesting) throw new JinjaException($"a value nested deeper than {MaxNesting}");
            switch (value)
            {
                case null or JinjaUndefined:
                    text.Append("null");
                    break;
                case bool b:
                    text.Append(b ? "true" : "false");
                    break;
                case long or double:
                    text.Append(JsonNumber(value));
                    break;
                case JinjaString s:
                    text.Append(JsonString(s.Text));
                    break;
                case List<object?> list:
                    Container('[', ']', list.Count, list.Select<object?, Action>(x => () => Write(x, depth + 1)), depth);
                    break;
                case OrderedDictionary<string, object?> or JinjaNamespace:
                    var entries = value is JinjaNamespace ns ? ns.Values.ToList() : ((OrderedDictionary<string, object?>)value).ToList();
                    if (sortKeys) entries.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
                    Container('{', '}', entries.Count, entries.Select<KeyValuePair<string, object?>, Action>(p => () =>
                    {
                        text.Append(JsonString(p.Key)).Append(sep.Key);
                        Write(p.Value, depth + 1);
                    }), depth);
                    break;
                default:
                    throw new JinjaException($"cannot convert {TypeName(value)} to JSON");
            }
        }

        void Container(char open, char close, int count, IEnumerable<Action> items, int depth)
        {
            text.Append(open);
            var pad = indent is not null && count > 0;
            var first = true;
            foreach (var item in items)
            {
                if (!first) text.Append(sep.Item);
                if (pad) text.Append('\n').Append(' ', indent!.Value * (depth + 1));
                item();
                first = false;
            }
            if (pad) text.Append('\n').Append(' ', indent!.Value * depth);
            text.Append(close);
        }
    }

    /// <summary>A number as Python's json.dumps writes it (Infinity and NaN included, floats as Python prints them).</summary>
    private static string JsonNumber(object v) => v switch
    {
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d when double.IsNaN(d) => "NaN",
        double d when double.IsInfinity(d) => d > 0 ? "Infinity" : "-Infinity",
        _ => Float((double)v),
    };

    /// <summary>A JSON string literal with only what JSON requires escaped (quote, backslash, control characters).</summary>
    public static string JsonString(string s)
    {
        var text = new StringBuilder(s.Length + 2).Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < 0x20) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else text.Append(c);
                    break;
            }
        }
        return text.Append('"').ToString();
    }
}
