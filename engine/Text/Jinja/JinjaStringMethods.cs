namespace MoeMesh.Engine.Text.Jinja;

/// <summary>Python's str methods that chat templates call (split, strip, startswith, replace, ...).</summary>
internal static class JinjaStringMethods
{
    public static object? Method(JinjaString s, string name) => name switch
    {
        "strip" => (JinjaFunction)((args, _) => Strip(s, Chars(args), left: true, right: true)),
        "lstrip" => (JinjaFunction)((args, _) => Strip(s, Chars(args), left: true, right: false)),
        "rstrip" => (JinjaFunction)((args, _) => Strip(s, Chars(args), left: false, right: true)),
        "split" => (JinjaFunction)((args, kwargs) => Split(s, Arg(args, kwargs, 0, "sep"), Arg(args, kwargs, 1, "maxsplit") as long? ?? -1)),
        "startswith" => (JinjaFunction)((args, _) => Affixes(args, "startswith").Any(p => s.Text.StartsWith(p, StringComparison.Ordinal))),
        "endswith" => (JinjaFunction)((args, _) => Affixes(args, "endswith").Any(p => s.Text.EndsWith(p, StringComparison.Ordinal))),
        "replace" => (JinjaFunction)((args, kwargs) => Replace(s, Arg(args, kwargs, 0, "old"), Arg(args, kwargs, 1, "new"), Arg(args, kwargs, 2, "count") as long? ?? -1)),
        "upper" => (JinjaFunction)((_, _) => Derived(s, s.Text.ToUpperInvariant())),
        "lower" => (JinjaFunction)((_, _) => Derived(s, s.Text.ToLowerInvariant())),
        "title" => (JinjaFunction)((_, _) => Derived(s, Title(s.Text))),
        "capitalize" => (JinjaFunction)((_, _) => Derived(s, Capitalize(s.Text))),
        "find" => (JinjaFunction)((args, _) => (long)s.Text.IndexOf(Text(args.ElementAtOrDefault(0), "find"), StringComparison.Ordinal)),
        "count" => (JinjaFunction)((args, _) => Count(s.Text, Text(args.ElementAtOrDefault(0), "count"))),
        "join" => (JinjaFunction)((args, _) => Join(JinjaInterpreter.Iterate(args.ElementAtOrDefault(0)), s)),
        "isdigit" => (JinjaFunction)((_, _) => s.Text.Length > 0 && s.Text.All(char.IsDigit)),
        "isalpha" => (JinjaFunction)((_, _) => s.Text.Length > 0 && s.Text.All(char.IsLetter)),
        "isspace" => (JinjaFunction)((_, _) => s.Text.Length > 0 && s.Text.All(char.IsWhiteSpace)),
        "islower" => (JinjaFunction)((_, _) => s.Text.Any(char.IsLetter) && !s.Text.Any(char.IsUpper)),
        "isupper" => (JinjaFunction)((_, _) => s.Text.Any(char.IsLetter) && !s.Text.Any(char.IsLower)),
        _ => JinjaUndefined.Value,
    };

    private static object? Arg(List<object?> args, Dictionary<string, object?> kwargs, int i, string name) =>
        i < args.Count ? args[i] : kwargs.TryGetValue(name, out var v) ? v : null;

    private static string? Chars(List<object?> args) => args.ElementAtOrDefault(0) switch
    {
        null => null,
        JinjaString c => c.Text,
        var v => throw new JinjaException($"strip characters must be a string, got {JinjaValues.TypeName(v)}"),
    };

    private static string Text(object? v, string method) =>
        v is JinjaString s ? s.Text : throw new JinjaException($"{method}() needs a string argument, got {JinjaValues.TypeName(v)}");

    private static JinjaString Derived(JinjaString s, string text) => JinjaString.DerivedFrom(text, s.HasContent);

    public static JinjaString Strip(JinjaString s, string? chars, bool left, bool right)
    {
        bool Strippable(char c) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c);
        int start = 0, end = s.Text.Length;
        if (left) while (start < end && Strippable(s.Text[start])) start++;
        if (right) while (end > start && Strippable(s.Text[end - 1])) end--;
        return s.Substring(start, end - start);
    }

    public static List<object?> Split(JinjaString s, object? separator, long maxSplit)
    {
        var parts = new List<object?>();
        var text = s.Text;
        if (separator is null)
        {
            var i = 0;
            while (true)
            {
                while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
                if (i >= text.Length) break;
                if (maxSplit >= 0 && parts.Count == maxSplit)
                {
                    // Python keeps the remainder as it is, trailing whitespace included.
                    parts.Add(s.Substring(i, text.Length - i));
                    break;
                }
                var start = i;
                while (i < text.Length && !char.IsWhiteSpace(text[i])) i++;
                parts.Add(s.Substring(start, i - start));
            }
            return parts;
        }
        var sep = Text(separator, "split");
        if (sep.Length == 0) throw new JinjaException("split() separator is empty");
        var from = 0;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            var at = text.IndexOf(sep, from, StringComparison.Ordinal);
            if (at < 0) break;
            parts.Add(s.Substring(from, at - from));
            from = at + sep.Length;
        }
        parts.Add(s.Substring(from, text.Length - from));
        return parts;
    }

    private static IEnumerable<string> Affixes(List<object?> args, string method) => args.ElementAtOrDefault(0) switch
    {
        JinjaString p => [p.Text],
        List<object?> list => list.Select(x => Text(x, method)),
        var v => throw new JinjaException($"{method}() needs a string or a tuple of strings, got {JinjaValues.TypeName(v)}"),
    };

    public static JinjaString Replace(JinjaString s, object? oldValue, object? newValue, long count)
    {
        var old = Text(oldValue, "replace");
        var replacement = newValue as JinjaString ?? throw new JinjaException("replace() needs a string replacement");
        var result = new JinjaString.Builder();
        var done = 0L;
        if (old.Length == 0)
        {
            // Python puts the replacement before every character and at the end.
            for (var i = 0; i <= s.Text.Length; i++)
            {
                if (count < 0 || done++ < count) result.Append(replacement);
                if (i < s.Text.Length) result.Append(s.Substring(i, 1));
            }
            return result.ToJinjaString();
        }
        var from = 0;
        for (var at = s.Text.IndexOf(old, StringComparison.Ordinal); at >= 0 && (count < 0 || done < count); at = s.Text.IndexOf(old, from, StringComparison.Ordinal), done++)
        {
            result.Append(s.Substring(from, at - from));
            result.Append(replacement);
            from = at + old.Length;
        }
        result.Append(s.Substring(from, s.Text.Length - from));
        return result.ToJinjaString();
    }

    private static long Count(string text, string sub)
    {
        if (sub.Length == 0) return text.Length + 1;
        long n = 0;
        for (var at = text.IndexOf(sub, StringComparison.Ordinal); at >= 0; at = text.IndexOf(sub, at + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    public static JinjaString Join(IEnumerable<object?> items, JinjaString separator)
    {
        var result = new JinjaString.Builder();
        var first = true;
        foreach (var item in items)
        {
            if (!first) result.Append(separator);
            result.Append(JinjaValues.Str(item));
            first = false;
        }
        return result.ToJinjaString();
    }

    public static string Title(string text)
    {
        var chars = text.ToCharArray();
        var previousCased = false;
        for (var i = 0; i < chars.Length; i++)
        {
            var c = chars[i];
            chars[i] = previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c);
            previousCased = char.IsLetter(c);
        }
        return new string(chars);
    }

    public static string Capitalize(string text) =>
        text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..].ToLowerInvariant();
}
