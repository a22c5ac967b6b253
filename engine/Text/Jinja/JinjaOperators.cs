namespace MoeMesh.Engine.Text.Jinja;

/// <summary>The binary operators other than 'and' and 'or', with Python's meaning.</summary>
internal static class JinjaOperators
{
    public static object? Apply(string op, object? left, object? right)
    {
        switch (op)
        {
            case "==":
                return JinjaValues.Equals(left, right);
            case "!=":
                return !JinjaValues.Equals(left, right);
            case "in":
                return Contains(right, left);
            case "not in":
                return !Contains(right, left);
            case "~":
                return JinjaString.Concat(JinjaValues.Str(left), JinjaValues.Str(right));
        }
        if (left is JinjaUndefined || right is JinjaUndefined) throw new JinjaException($"cannot apply '{op}' to an undefined value");
        if (left is null || right is null) throw new JinjaException($"cannot apply '{op}' to none");
        if (left is long or double or bool && right is long or double or bool) return Arithmetic(op, left, right);
        return (op, left, right) switch
        {
            ("+", JinjaString a, JinjaString b) => JinjaString.Concat(a, b),
            ("+", List<object?> a, List<object?> b) => a.Concat(b).ToList(),
            ("*", JinjaString s, long n) => Repeat(s, n),
            ("*", long n, JinjaString s) => Repeat(s, n),
            ("<" or "<=" or ">" or ">=", JinjaString a, JinjaString b) => Compare(op, string.CompareOrdinal(a.Text, b.Text)),
            _ => throw new JinjaException($"cannot apply '{op}' to {JinjaValues.TypeName(left)} and {JinjaValues.TypeName(right)}"),
        };
    }

    private static bool Contains(object? container, object? item) => container switch
    {
        JinjaString s when item is JinjaString sub => s.Text.Contains(sub.Text, StringComparison.Ordinal),
        List<object?> list => list.Any(x => JinjaValues.Equals(x, item)),
        OrderedDictionary<string, object?> dict => item is JinjaString key && dict.ContainsKey(key.Text),
        JinjaUndefined => false,
        _ => throw new JinjaException($"cannot test membership in {JinjaValues.TypeName(container)}"),
    };

    private static JinjaString Repeat(JinjaString s, long n)
    {
        if (n <= 0 || s.Text.Length == 0) return JinjaString.Empty;
        if (n > JinjaInterpreter.MaxOutputChars / s.Text.Length) throw new JinjaException("a repeated string would be too long");
        var result = new JinjaString.Builder();
        for (var i = 0; i < n; i++) result.Append(s);
        return result.ToJinjaString();
    }

    private static object Arithmetic(string op, object left, object right)
    {
        if (op is "<" or "<=" or ">" or ">=") return Compare(op, JinjaValues.ToDouble(left).CompareTo(JinjaValues.ToDouble(right)));
        if (left is not double && right is not double)
        {
            long a = left is bool x ? (x ? 1 : 0) : (long)left, b = right is bool y ? (y ? 1 : 0) : (long)right;
            switch (op)
            {
                case "+": return checked(a + b);
                case "-": return checked(a - b);
                case "*": return checked(a * b);
                case "//": return b == 0 ? throw new JinjaException("integer division by zero") : FloorDiv(a, b);
                case "%": return b == 0 ? throw new JinjaException("integer modulo by zero") : a - FloorDiv(a, b) * b;
                case "**" when b >= 0: return (long)Math.Pow(a, b);
            }
        }
        double p = JinjaValues.ToDouble(left), q = JinjaValues.ToDouble(right);
        return op switch
        {
            "+" => p + q,
            "-" => p - q,
            "*" => p * q,
            "/" => q == 0 ? throw new JinjaException("division by zero") : p / q,
            "//" => q == 0 ? throw new JinjaException("division by zero") : Math.Floor(p / q),
            "%" => q == 0 ? throw new JinjaException("modulo by zero") : p - Math.Floor(p / q) * q,
            "**" => Math.Pow(p, q),
            _ => throw new JinjaException($"cannot apply '{op}' to numbers"),
        };
    }

    private static long FloorDiv(long a, long b) => a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);

    private static bool Compare(string op, int c) => op switch
    {
        "<" => c < 0,
        "<=" => c <= 0,
        ">" => c > 0,
        _ => c >= 0,
    };
}
