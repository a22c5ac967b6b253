using System.Globalization;
using System.Text;

namespace MoeMesh.Engine.Text;

/// <summary>
/// Rewrites a tokenizer's split pattern (Oniguruma syntax, as Hugging Face's tokenizers runs it on code points) into a
/// .NET regex that matches whole code points. .NET's regexes see UTF-16 code units: a character outside the Basic
/// Multilingual Plane is two surrogates whose category is Cs, so <c>\p{L}</c> never matches an emoji or 𝑥 while
/// <c>[^...]</c> and <c>\S</c> match half of one. Each character set of the pattern (a class, <c>\p{..}</c>,
/// <c>\s</c>, <c>\d</c>, <c>.</c> and their negations) becomes a group of two alternatives: its Basic Multilingual
/// Plane part as a .NET class without the surrogates, and its supplementary-plane part as surrogate pairs, grouped by
/// high surrogate, computed from the same Unicode tables .NET's classes use. Everything else (groups, alternation,
/// quantifiers, lookaround, anchors) is copied as it is. Syntax outside that subset is refused.
/// </summary>
public static class CodePointPattern
{
    private const int FirstAstral = 0x10000;

    /// <summary>Translations made in this process: a tokenizer's patterns are the same for every load of it.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> Translated = new(StringComparer.Ordinal);

    /// <summary>The general category of every supplementary-plane code point (index: code point - 0x10000), computed once.</summary>
    private static readonly Lazy<byte[]> AstralCategories = new(BuildAstralCategories);

    // Loops over a million code points run once per process: optimised at once rather than in tiers.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static byte[] BuildAstralCategories()
    {
        var categories = new byte[0x110000 - FirstAstral];
        for (var i = 0; i < categories.Length; i++) categories[i] = (byte)CharUnicodeInfo.GetUnicodeCategory(FirstAstral + i);
        return categories;
    }

    public static string Translate(string pattern) => Translated.GetOrAdd(pattern, TranslateNew);

    private static string TranslateNew(string pattern)
    {
        var output = new StringBuilder(pattern.Length * 2);
        for (var i = 0; i < pattern.Length;)
        {
            var c = pattern[i];
            if (c == '[')
            {
                output.Append(ParseClass(pattern, ref i).Emit());
            }
            else if (c == '\\')
            {
                if (i + 1 >= pattern.Length) throw Refuse(pattern, "a trailing backslash");
                if (TryEscapeSet(pattern, ref i, out var set)) output.Append(set.Emit());
                else
                {
                    // A literal escape (\r, \n, \., \\, ...): copied, and .NET reads it the same.
                    if (char.IsAsciiLetterOrDigit(pattern[i + 1]) && "rntfvae".IndexOf(pattern[i + 1]) < 0)
                        throw Refuse(pattern, $"the escape \\{pattern[i + 1]}");
                    output.Append(pattern, i, 2);
                    i += 2;
                }
            }
            else if (c == '.')
            {
                output.Append(new CharSet([@"\n"], Negated: true, new bool[32], []).Emit());
                i++;
            }
            else if (char.IsHighSurrogate(c) && i + 1 < pattern.Length && char.IsLowSurrogate(pattern[i + 1]))
            {
                // A supplementary-plane literal: grouped, so that a quantifier after it repeats the whole code point.
                output.Append("(?:").Append(pattern, i, 2).Append(')');
                i += 2;
            }
            else
            {
                output.Append(c);
                i++;
            }
        }
        return output.ToString();
    }

    /// <summary>
    /// A set of code points: <paramref name="Items"/> in .NET class syntax for its Basic Multilingual Plane part (the
    /// set is their union, or with <paramref name="Negated"/> its complement); its supplementary-plane part (before
    /// negation) is the code points whose general category is marked in <paramref name="Categories"/> (indexed by
    /// <see cref="UnicodeCategory"/>) or that lie in one of <paramref name="Ranges"/>.
    /// </summary>
    private sealed record CharSet(List<string> Items, bool Negated, bool[] Categories, List<(int From, int To)> Ranges)
    {
        public string Emit()
        {
            var bmp = Items.Count == 0
                ? (Negated ? @"[^\uD800-\uDFFF]" : null)
                : Negated ? $@"[^{string.Concat(Items)}\uD800-\uDFFF]" : $@"[{string.Concat(Items)}-[\uD800-\uDFFF]]";
            var astral = AstralAlternatives(this);
            if (astral is null) return bmp ?? "(?!)";
            return bmp is null ? $"(?:{astral})" : $"(?:{bmp}|{astral})";
        }
    }

    /// <summary>Supplementary-plane code points in the set as surrogate pairs, high surrogates with the same low ranges merged; null when none.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static string? AstralAlternatives(CharSet set)
    {
        var categories = AstralCategories.Value;
        var ranges = set.Ranges.ToArray();
        bool contains(int cp)
        {
            var inside = set.Categories[categories[cp - FirstAstral]];
            for (var r = 0; !inside && r < ranges.Length; r++) inside = cp >= ranges[r].From && cp <= ranges[r].To;
            return inside != set.Negated;
        }
        var parts = new List<string>();
        string? previousLows = null;
        int runStart = 0, runEnd = -1;
        void FlushRun()
        {
            if (previousLows is null) return;
            var high = runStart == runEnd ? Unit(runStart) : $"[{Unit(runStart)}-{Unit(runEnd)}]";
            parts.Add(high + previousLows);
        }
        for (var high = 0xD800; high <= 0xDBFF; high++)
        {
            var lows = new StringBuilder();
            var count = 0;
            var baseCp = FirstAstral + ((high - 0xD800) << 10);
            for (var low = 0; low < 1024;)
            {
                if (!contains(baseCp + low)) { low++; continue; }
                var start = low;
                while (low < 1024 && contains(baseCp + low)) low++;
                lows.Append(start == low - 1 ? Unit(0xDC00 + start) : $"{Unit(0xDC00 + start)}-{Unit(0xDC00 + low - 1)}");
                count++;
            }
            var lowClass = count == 0 ? null : $"[{lows}]";
            if (lowClass == previousLows && lowClass is not null && runEnd == high - 1)
            {
                runEnd = high;
                continue;
            }
            FlushRun();
            previousLows = lowClass;
            runStart = runEnd = high;
        }
        FlushRun();
        return parts.Count == 0 ? null : string.Join("|", parts);
    }

    private static string Unit(int unit) => $"\\u{unit:X4}";

    /// <summary>\p{X}, \P{X}, \s, \S, \d, \D at <paramref name="i"/> (a backslash) as a set; false for any other escape.</summary>
    private static bool TryEscapeSet(string pattern, ref int i, out CharSet set)
    {
        var kind = pattern[i + 1];
        switch (kind)
        {
            case 'p' or 'P':
                var close = pattern.IndexOf('}', i);
                if (i + 2 >= pattern.Length || pattern[i + 2] != '{' || close < 0) throw Refuse(pattern, "\\p without {name}");
                var name = pattern[(i + 3)..close];
                var categories = Categories(name) ?? throw Refuse(pattern, $"the property \\p{{{name}}}");
                var member = new bool[32];
                foreach (var c in categories) member[(int)c] = true;
                set = new CharSet([$@"\p{{{name}}}"], kind == 'P', member, []);
                i = close + 1;
                return true;
            case 's' or 'S':
                // Every White_Space character is in the Basic Multilingual Plane; .NET's \s is that set.
                set = new CharSet([@"\s"], kind == 'S', new bool[32], []);
                i += 2;
                return true;
            case 'd' or 'D':
                var digits = new bool[32];
                digits[(int)UnicodeCategory.DecimalDigitNumber] = true;
                set = new CharSet([@"\d"], kind == 'D', digits, []);
                i += 2;
                return true;
            case 'w' or 'W' or 'b' or 'B' or 'h' or 'H' or 'X' or 'R':
                throw Refuse(pattern, $"the escape \\{kind}");
            default:
                set = null!;
                return false;
        }
    }

    /// <summary>A bracketed class at <paramref name="i"/>: literals, ranges (either plane) and the set escapes, negated or not.</summary>
    private static CharSet ParseClass(string pattern, ref int i)
    {
        var start = i;
        i++;
        var negated = i < pattern.Length && pattern[i] == '^';
        if (negated) i++;
        var items = new List<string>();
        var categories = new bool[32];
        var ranges = new List<(int From, int To)>();
        var first = true;
        while (true)
        {
            if (i >= pattern.Length) throw Refuse(pattern, $"an unclosed class at {start}");
            var c = pattern[i];
            if (c == ']' && !first) { i++; break; }
            first = false;
            if (c == '[') throw Refuse(pattern, "a nested class");
            if (c == '&' && i + 1 < pattern.Length && pattern[i + 1] == '&') throw Refuse(pattern, "class intersection");
            int low;
            if (c == '\\')
            {
                if (i + 1 >= pattern.Length) throw Refuse(pattern, "a trailing backslash");
                var at = i;
                if (TryEscapeSet(pattern, ref i, out var inner))
                {
                    // As written (.NET reads \p{X}, \P{X}, \s, \S, \d, \D inside a class); \S or \P{X}: its
                    // supplementary-plane part is everything the positive form's is not.
                    items.Add(pattern[at..i]);
                    for (var k = 0; k < categories.Length; k++) categories[k] |= inner.Categories[k] != inner.Negated;
                    continue;
                }
                low = EscapedLiteral(pattern, i);
                i += 2;
            }
            else
            {
                low = char.ConvertToUtf32(pattern, i);
                i += low >= FirstAstral ? 2 : 1;
            }
            var high = low;
            if (i + 1 < pattern.Length && pattern[i] == '-' && pattern[i + 1] != ']')
            {
                i++;
                if (pattern[i] == '\\')
                {
                    high = EscapedLiteral(pattern, i);
                    i += 2;
                }
                else
                {
                    high = char.ConvertToUtf32(pattern, i);
                    i += high >= FirstAstral ? 2 : 1;
                }
                if (high < low) throw Refuse(pattern, "a reversed range");
            }
            if (low < FirstAstral) items.Add($"{Unit(low)}-{Unit(Math.Min(high, 0xFFFF))}");
            if (high >= FirstAstral)
            {
                ranges.Add((Math.Max(low, FirstAstral), high));
            }
        }
        return new CharSet(items, negated, categories, ranges);
    }

    /// <summary>The character an escape such as \n, \] or \- stands for.</summary>
    private static int EscapedLiteral(string pattern, int i)
    {
        var e = pattern[i + 1];
        return e switch
        {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'f' => '\f',
            'v' => '\v',
            'a' => '\a',
            'e' => '\u001b',
            _ when char.IsAsciiLetterOrDigit(e) => throw Refuse(pattern, $"the escape \\{e}"),
            _ => e,
        };
    }

    /// <summary>The general categories a property name stands for (one- or two-letter names, as the patterns use).</summary>
    private static HashSet<UnicodeCategory>? Categories(string name)
    {
        var all = Enum.GetValues<UnicodeCategory>();
        HashSet<UnicodeCategory> Of(params UnicodeCategory[] c) => [.. c];
        return name switch
        {
            "L" or "Letter" => Of(UnicodeCategory.UppercaseLetter, UnicodeCategory.LowercaseLetter, UnicodeCategory.TitlecaseLetter, UnicodeCategory.ModifierLetter, UnicodeCategory.OtherLetter),
            "Lu" => Of(UnicodeCategory.UppercaseLetter),
            "Ll" => Of(UnicodeCategory.LowercaseLetter),
            "Lt" => Of(UnicodeCategory.TitlecaseLetter),
            "Lm" => Of(UnicodeCategory.ModifierLetter),
            "Lo" => Of(UnicodeCategory.OtherLetter),
            "M" or "Mark" => Of(UnicodeCategory.NonSpacingMark, UnicodeCategory.SpacingCombiningMark, UnicodeCategory.EnclosingMark),
            "Mn" => Of(UnicodeCategory.NonSpacingMark),
            "Mc" => Of(UnicodeCategory.SpacingCombiningMark),
            "Me" => Of(UnicodeCategory.EnclosingMark),
            "N" or "Number" => Of(UnicodeCategory.DecimalDigitNumber, UnicodeCategory.LetterNumber, UnicodeCategory.OtherNumber),
            "Nd" => Of(UnicodeCategory.DecimalDigitNumber),
            "Nl" => Of(UnicodeCategory.LetterNumber),
            "No" => Of(UnicodeCategory.OtherNumber),
            "P" or "Punctuation" => Of(UnicodeCategory.ConnectorPunctuation, UnicodeCategory.DashPunctuation, UnicodeCategory.OpenPunctuation, UnicodeCategory.ClosePunctuation,
                UnicodeCategory.InitialQuotePunctuation, UnicodeCategory.FinalQuotePunctuation, UnicodeCategory.OtherPunctuation),
            "Pc" => Of(UnicodeCategory.ConnectorPunctuation),
            "Pd" => Of(UnicodeCategory.DashPunctuation),
            "Ps" => Of(UnicodeCategory.OpenPunctuation),
            "Pe" => Of(UnicodeCategory.ClosePunctuation),
            "Pi" => Of(UnicodeCategory.InitialQuotePunctuation),
            "Pf" => Of(UnicodeCategory.FinalQuotePunctuation),
            "Po" => Of(UnicodeCategory.OtherPunctuation),
            "S" or "Symbol" => Of(UnicodeCategory.MathSymbol, UnicodeCategory.CurrencySymbol, UnicodeCategory.ModifierSymbol, UnicodeCategory.OtherSymbol),
            "Sm" => Of(UnicodeCategory.MathSymbol),
            "Sc" => Of(UnicodeCategory.CurrencySymbol),
            "Sk" => Of(UnicodeCategory.ModifierSymbol),
            "So" => Of(UnicodeCategory.OtherSymbol),
            "Z" or "Separator" => Of(UnicodeCategory.SpaceSeparator, UnicodeCategory.LineSeparator, UnicodeCategory.ParagraphSeparator),
            "Zs" => Of(UnicodeCategory.SpaceSeparator),
            "Zl" => Of(UnicodeCategory.LineSeparator),
            "Zp" => Of(UnicodeCategory.ParagraphSeparator),
            "C" or "Other" => Of(UnicodeCategory.Control, UnicodeCategory.Format, UnicodeCategory.Surrogate, UnicodeCategory.PrivateUse, UnicodeCategory.OtherNotAssigned),
            "Cc" => Of(UnicodeCategory.Control),
            "Cf" => Of(UnicodeCategory.Format),
            "Co" => Of(UnicodeCategory.PrivateUse),
            "Cn" => Of(UnicodeCategory.OtherNotAssigned),
            _ => null,
        };
    }

    private static InvalidDataException Refuse(string pattern, string what) =>
        new($"tokenizer pattern {pattern}: {what} is not supported");
}
