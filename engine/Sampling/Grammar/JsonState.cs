namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>A position in a JSON object being written (see <see cref="JsonObjectGrammar"/>).</summary>
internal sealed class JsonState : GrammarState
{
    private enum Mode : byte
    {
        Start,          // expects the top-level '{'
        ObjectOpen,     // after '{': a key or '}'
        KeyExpected,    // after ',' in an object: a key
        Key,            // inside a key string
        Colon,          // after a key: ':'
        ValueExpected,  // a value
        ArrayOpen,      // after '[': a value or ']'
        Text,           // inside a string value
        Number,
        Literal,        // true, false, null
        AfterValue,     // ',' or the container's closer
        Done,
    }

    private static readonly byte[][] Literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    public static readonly JsonState Initial = new("", Mode.Start, 0, 0, 0);

    private readonly string _stack; // 'o' object, 'a' array, innermost last
    private readonly Mode _mode;
    private readonly int _sub;      // strings: escape phase; numbers: phase; literals: which and how far
    private readonly int _count;    // strings: UTF-8 continuation bytes due; numbers: length; whitespace run elsewhere
    private readonly int _ws;

    private JsonState(string stack, Mode mode, int sub, int count, int ws)
    {
        _stack = stack;
        _mode = mode;
        _sub = sub;
        _count = count;
        _ws = ws;
    }

    public override bool IsComplete => _mode == Mode.Done;

    public override string Key => $"json|{_stack}|{(byte)_mode}|{_sub}|{_count}|{_ws}";

    /// <summary>Inside a string (key or value), what may follow up to the closing quote depends only on the escape and UTF-8 phase.</summary>
    public override string? RegionKey => _mode is Mode.Key or Mode.Text ? $"json-string|{_sub}|{_count}" : null;

    public override byte[] RegionExits => Quote;

    private static readonly byte[] Quote = [(byte)'"'];

    public override GrammarState? Advance(byte b) => _mode switch
    {
        Mode.Start => b == '{' ? Open('o') : null,
        Mode.ObjectOpen => b == '"' ? With(Mode.Key) : b == '}' ? Close('o') : Space(b),
        Mode.KeyExpected => b == '"' ? With(Mode.Key) : Space(b),
        Mode.Key or Mode.Text => InString(b),
        Mode.Colon => b == ':' ? With(Mode.ValueExpected) : Space(b),
        Mode.ValueExpected => Value(b) ?? Space(b),
        Mode.ArrayOpen => b == ']' ? Close('a') : Value(b) ?? Space(b),
        Mode.Number => InNumber(b),
        Mode.Literal => InLiteral(b),
        Mode.AfterValue => AfterValue(b),
        _ => null,
    };

    private JsonState With(Mode mode, int sub = 0, int count = 0) => new(_stack, mode, sub, count, 0);

    private JsonState? Space(byte b)
    {
        if (b is not ((byte)' ' or (byte)'\n' or (byte)'\t' or (byte)'\r') || _ws >= JsonObjectGrammar.MaxWhitespace) return null;
        return new JsonState(_stack, _mode, _sub, _count, _ws + 1);
    }

    private JsonState? Open(char container)
    {
        if (_stack.Length >= JsonObjectGrammar.MaxDepth) return null;
        return new JsonState(_stack + container, container == 'o' ? Mode.ObjectOpen : Mode.ArrayOpen, 0, 0, 0);
    }

    private JsonState? Close(char container)
    {
        if (_stack.Length == 0 || _stack[^1] != container) return null;
        var stack = _stack[..^1];
        return new JsonState(stack, stack.Length == 0 ? Mode.Done : Mode.AfterValue, 0, 0, 0);
    }

    private JsonState? Value(byte b) => b switch
    {
        (byte)'{' => Open('o'),
        (byte)'[' => Open('a'),
        (byte)'"' => With(Mode.Text),
        (byte)'-' => With(Mode.Number, 1, 1),
        (byte)'0' => With(Mode.Number, 3, 1),
        >= (byte)'1' and <= (byte)'9' => With(Mode.Number, 2, 1),
        (byte)'t' => With(Mode.Literal, 0 * 8 + 1),
        (byte)'f' => With(Mode.Literal, 1 * 8 + 1),
        (byte)'n' => With(Mode.Literal, 2 * 8 + 1),
        _ => null,
    };

    private JsonState? AfterValue(byte b)
    {
        if (b == ',') return With(_stack[^1] == 'o' ? Mode.KeyExpected : Mode.ValueExpected);
        if (b == '}') return Close('o');
        if (b == ']') return Close('a');
        return Space(b);
    }

    private JsonState? InLiteral(byte b)
    {
        var (which, at) = (_sub / 8, _sub % 8);
        var literal = Literals[which];
        if (literal[at] != b) return null;
        return at + 1 == literal.Length ? With(Mode.AfterValue) : With(Mode.Literal, _sub + 1);
    }

    /// <summary>Strings: UTF-8 (lead bytes C2-F4 with their continuation bytes), no control characters, JSON's escapes.</summary>
    private JsonState? InString(byte b)
    {
        if (_count > 0)
        {
            // The first continuation byte after E0, ED, F0 and F4 is narrower: no overlong forms, no surrogates, nothing past U+10FFFF.
            var (low, high) = _sub switch { 10 => (0xA0, 0xBF), 11 => (0x80, 0x9F), 12 => (0x90, 0xBF), 13 => (0x80, 0x8F), _ => (0x80, 0xBF) };
            return b >= low && b <= high ? With(_mode, 0, _count - 1) : null;
        }
        switch (_sub)
        {
            case 1: // after a backslash
                if (b == 'u') return With(_mode, 2);
                return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t' ? With(_mode) : null;
            case >= 2 and <= 6: // \uXXXX, phases 2-5 for the digits (6: a second digit after 'd', which must be 0-7)
                if (!Uri.IsHexDigit((char)b)) return null;
                if (_sub == 2 && b is (byte)'d' or (byte)'D') return With(_mode, 6);
                // No surrogate escapes (D800-DFFF): half a pair alone is not text.
                if (_sub == 6) return b is >= (byte)'0' and <= (byte)'7' ? With(_mode, 4) : null;
                return _sub == 5 ? With(_mode) : With(_mode, _sub + 1);
        }
        return b switch
        {
            (byte)'"' => _mode == Mode.Key ? With(Mode.Colon) : With(Mode.AfterValue),
            (byte)'\\' => With(_mode, 1),
            < 0x20 => null,
            < 0x80 => With(_mode),
            >= 0xC2 and <= 0xDF => With(_mode, 0, 1),
            0xE0 => With(_mode, 10, 2),
            0xED => With(_mode, 11, 2),
            >= 0xE1 and <= 0xEF => With(_mode, 0, 2),
            0xF0 => With(_mode, 12, 3),
            0xF4 => With(_mode, 13, 3),
            >= 0xF1 and <= 0xF3 => With(_mode, 0, 3),
            _ => null,
        };
    }

    /// <summary>
    /// JSON numbers by phase: 1 after '-', 2 in the integer, 3 after a leading 0, 4 after '.', 5 in the fraction,
    /// 6 after 'e', 7 after the exponent's sign, 8 in the exponent. A byte that cannot continue the number ends it
    /// where the number may end (phases 2, 3, 5, 8) and is read after it.
    /// </summary>
    private JsonState? InNumber(byte b)
    {
        var digit = b is >= (byte)'0' and <= (byte)'9';
        var next = (_sub, b) switch
        {
            (1, (byte)'0') => 3,
            (1, _) when digit => 2,
            (2, _) when digit => 2,
            (2 or 3, (byte)'.') => 4,
            (2 or 3 or 5, (byte)'e' or (byte)'E') => 6,
            (4 or 5, _) when digit => 5,
            (6, (byte)'+' or (byte)'-') => 7,
            (6 or 7 or 8, _) when digit => 8,
            _ => 0,
        };
        // Within the length bound, and never into a phase that needs a digit the bound leaves no room for.
        var needs = next is 1 or 4 or 6 or 7 ? 1 : 0;
        if (next != 0) return _count + 1 + needs <= JsonObjectGrammar.MaxNumberLength ? With(Mode.Number, next, _count + 1) : null;
        return _sub is 2 or 3 or 5 or 8 ? With(Mode.AfterValue).AfterValue(b) : null;
    }
}
