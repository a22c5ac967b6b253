using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace MoeMesh.Engine.Text.Jinja;

/// <summary>The kinds of token a chat template is made of.</summary>
internal enum TokenKind
{
    Text,
    OpenExpression,
    CloseExpression,
    OpenStatement,
    CloseStatement,
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

internal readonly record struct Token(TokenKind Kind, string Value, int Position);

/// <summary>
/// Splits a template into text and tag tokens, with the whitespace control Hugging Face applies to chat templates:
/// trim_blocks and lstrip_blocks on, a single trailing newline dropped, and the '-' markers.
/// </summary>
internal static partial class JinjaLexer
{
    private static readonly string[] Operators =
        ["==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    public static List<Token> Tokenize(string template)
    {
        var src = Preprocess(template);
        var tokens = new List<Token>();
        var at = 0;
        var stripNextText = false;
        while (at < src.Length)
        {
            var open = NextTag(src, at);
            var textEnd = open < 0 ? src.Length : open;
            var text = src[at..textEnd];
            if (stripNextText) text = text.TrimStart();
            if (open >= 0 && src.Length > open + 2 && src[open + 2] == '-') text = text.TrimEnd();
            if (text.Length > 0) tokens.Add(new Token(TokenKind.Text, text, at));
            if (open < 0) break;
            at = open;
            var kind = src[open + 1];
            at += src.Length > open + 2 && src[open + 2] == '-' ? 3 : 2;
            if (kind == '#')
            {
                var close = src.IndexOf("#}", at, StringComparison.Ordinal);
                if (close < 0) throw new JinjaException("a comment is not closed", open);
                stripNextText = close > at && src[close - 1] == '-';
                at = close + 2;
                continue;
            }
            tokens.Add(new Token(kind == '{' ? TokenKind.OpenExpression : TokenKind.OpenStatement, "", open));
            at = TagBody(src, at, kind == '{' ? '}' : '%', tokens, out stripNextText);
        }
        tokens.Add(new Token(TokenKind.End, "", src.Length));
        return tokens;
    }

    /// <summary>Hugging Face's template preprocessing: one trailing newline off, lstrip_blocks, trim_blocks, generation tags removed.</summary>
    private static string Preprocess(string template)
    {
        // Python's Jinja reads every line ending as '\n'.
        template = template.Replace("\r\n", "\n").Replace('\r', '\n');
        if (template.EndsWith('\n')) template = template[..^1];
        template = LstripBlocks().Replace(template, "$1");
        template = TrimBlocks().Replace(template, "$1");
        return GenerationTag().Replace(template, m =>
            (m.Groups[2].Value == "-" ? "" : m.Groups[1].Value) + (m.Groups[3].Value == "-" ? "" : m.Groups[4].Value));
    }

    private static int NextTag(string src, int from)
    {
        for (var i = src.IndexOf('{', from); i >= 0 && i + 1 < src.Length; i = src.IndexOf('{', i + 1))
        {
            if (src[i + 1] is '{' or '%' or '#') return i;
        }
        return -1;
    }

    /// <summary>Reads the expression tokens of one tag up to its closing delimiter; returns the position after it.</summary>
    private static int TagBody(string src, int at, char closer, List<Token> tokens, out bool stripAfter)
    {
        var closeKind = closer == '}' ? TokenKind.CloseExpression : TokenKind.CloseStatement;
        var depth = 0;
        while (true)
        {
            while (at < src.Length && char.IsWhiteSpace(src[at])) at++;
            if (at >= src.Length) throw new JinjaException("a tag is not closed", at);
            if (depth == 0 && src[at] == '-' && At(src, at + 1, closer) && At(src, at + 2, '}'))
            {
                tokens.Add(new Token(closeKind, "", at));
                stripAfter = true;
                return at + 3;
            }
            if (depth == 0 && src[at] == closer && At(src, at + 1, '}'))
            {
                tokens.Add(new Token(closeKind, "", at));
                stripAfter = false;
                return at + 2;
            }
            var c = src[at];
            if (c is '\'' or '"') at = ReadString(src, at, tokens);
            else if (char.IsAsciiDigit(c)) at = ReadNumber(src, at, tokens);
            else if (char.IsAsciiLetter(c) || c == '_')
            {
                var start = at;
                while (at < src.Length && (char.IsAsciiLetterOrDigit(src[at]) || src[at] == '_')) at++;
                tokens.Add(new Token(TokenKind.Name, src[start..at], start));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(src, at, o, 0, o.Length) == 0)
                    ?? throw new JinjaException($"unexpected character '{c}'", at);
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth--;
                tokens.Add(new Token(TokenKind.Operator, op, at));
                at += op.Length;
            }
        }
    }

    private static bool At(string s, int i, char c) => i < s.Length && s[i] == c;

    private static int ReadString(string src, int at, List<Token> tokens)
    {
        var quote = src[at];
        var start = at++;
        var value = new StringBuilder();
        while (true)
        {
            if (at >= src.Length) throw new JinjaException("a string is not closed", start);
            var c = src[at++];
            if (c == quote) break;
            if (c != '\\') { value.Append(c); continue; }
            if (at >= src.Length) throw new JinjaException("a string is not closed", start);
            var e = src[at++];
            switch (e)
            {
                case 'u' or 'x' or 'U':
                {
                    // Python's \xHH, \uXXXX and \UXXXXXXXX.
                    var digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (at + digits > src.Length || !int.TryParse(src.AsSpan(at, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code)
                        || code > 0x10FFFF || code is >= 0xD800 and <= 0xDFFF)
                        throw new JinjaException($"a bad \\{e} escape", at - 2);
                    value.Append(char.ConvertFromUtf32(code));
                    at += digits;
                    break;
                }
                default:
                    // Python keeps an unknown escape as written, backslash included.
                    value.Append(e switch
                    {
                        'n' => "\n", 't' => "\t", 'r' => "\r", 'b' => "\b", 'f' => "\f", 'v' => "\v", 'a' => "\a", '0' => "\0",
                        '\'' => "'", '"' => "\"", '\\' => "\\", '\n' => "",
                        _ => "\\" + e,
                    });
                    break;
            }
        }
        tokens.Add(new Token(TokenKind.String, value.ToString(), start));
        return at;
    }

    private static int ReadNumber(string src, int at, List<Token> tokens)
    {
        var start = at;
        while (at < src.Length && char.IsAsciiDigit(src[at])) at++;
        var isFloat = at + 1 < src.Length && src[at] == '.' && char.IsAsciiDigit(src[at + 1]);
        if (isFloat)
        {
            at++;
            while (at < src.Length && char.IsAsciiDigit(src[at])) at++;
        }
        var text = src[start..at];
        if (!isFloat && !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            throw new JinjaException("an integer literal too large", start);
        tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, start));
        return at;
    }

    // JavaScript's multiline '^' also follows '\r', U+2028 and U+2029; Hugging Face's preprocessing is written in it.
    [GeneratedRegex(@"(?:^|(?<=[\n\r\u2028\u2029]))[ \t]*(\{[#%-])")]
    private static partial Regex LstripBlocks();

    [GeneratedRegex(@"([#%-]\})\n")]
    private static partial Regex TrimBlocks();

    [GeneratedRegex(@"(\s*)\{%(-?)\s*(?:end)?generation\s*(-?)%\}(\s*)", RegexOptions.Singleline)]
    private static partial Regex GenerationTag();
}
