using System.Text.Json.Nodes;

namespace MoeMesh.Testing.KubeApi;

/// <summary>Label selectors (=, ==, !=, in, notin, exists, !exists) and field selectors (=, ==, != on dotted paths).</summary>
public static class Selectors
{
    public static Func<JsonObject, bool> Labels(string? selector)
    {
        if (string.IsNullOrWhiteSpace(selector)) return _ => true;
        var tests = SplitTopLevel(selector).Select(LabelTest).ToArray();
        return o =>
        {
            var labels = o["metadata"]?["labels"] as JsonObject;
            return tests.All(t => t(labels));
        };
    }

    public static Func<JsonObject, bool> Fields(string? selector)
    {
        if (string.IsNullOrWhiteSpace(selector)) return _ => true;
        var tests = selector.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(term =>
        {
            var negate = term.Contains("!=");
            var parts = term.Split(negate ? "!=" : term.Contains("==") ? "==" : "=", 2);
            if (parts.Length != 2) throw new FormatException($"field selector term '{term}'");
            var (path, value) = (parts[0], parts[1]);
            return (Func<JsonObject, bool>)(o => (JsonPaths.Get(o, "." + path)?.ToString() ?? "") == value != negate);
        }).ToArray();
        return o => tests.All(t => t(o));
    }

    private static Func<JsonObject?, bool> LabelTest(string term)
    {
        term = term.Trim();
        string? Value(JsonObject? l, string k) => l?[k]?.ToString();
        foreach (var (op, negate) in new[] { (" notin ", true), (" in ", false) })
        {
            var i = term.IndexOf(op, StringComparison.Ordinal);
            if (i < 0) continue;
            var key = term[..i].Trim();
            var set = term[(i + op.Length)..].Trim().TrimStart('(').TrimEnd(')').Split(',').Select(s => s.Trim()).ToHashSet();
            return l => Value(l, key) is { } v ? set.Contains(v) != negate : negate;
        }
        if (term.Contains("!="))
        {
            var p = term.Split("!=", 2);
            return l => Value(l, p[0].Trim()) != p[1].Trim();
        }
        if (term.Contains('='))
        {
            var p = term.Split(term.Contains("==") ? "==" : "=", 2);
            return l => Value(l, p[0].Trim()) == p[1].Trim();
        }
        if (term.StartsWith('!')) return l => Value(l, term[1..]) is null;
        return l => Value(l, term) is not null;
    }

    /// <summary>Splits on commas outside parentheses.</summary>
    private static IEnumerable<string> SplitTopLevel(string s)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '(') depth++;
            else if (s[i] == ')') depth--;
            else if (s[i] == ',' && depth == 0)
            {
                yield return s[start..i];
                start = i + 1;
            }
        }
        yield return s[start..];
    }
}
