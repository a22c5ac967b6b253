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
        if (!JsonSyntax.IsSpace(b) || _ws >= JsonObjectGrammar.MaxWhitespace) return null;
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
        (byte)'-' or (>= (byte)'0' and <= (byte)'9') => With(Mode.Number, JsonSyntax.NumberStart(b), 1),
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

    /// <summary>Strings: see <see cref="JsonSyntax.StringStep"/>; the closing quote ends a key or a value.</summary>
    private JsonState? InString(byte b)
    {
        var (sub, count) = (_sub, _count);
        if (!JsonSyntax.StringStep(ref sub, ref count, b, escapes: true, out var closed)) return null;
        if (closed) return _mode == Mode.Key ? With(Mode.Colon) : With(Mode.AfterValue);
        return With(_mode, sub, count);
    }

    /// <summary>Numbers: see <see cref="JsonSyntax.NumberStep"/>; a byte that ends one is read after it.</summary>
    private JsonState? InNumber(byte b) => JsonSyntax.NumberStep(_sub, _count, b, integer: false, JsonObjectGrammar.MaxNumberLength) switch
    {
        > 0 and var next => With(Mode.Number, next, _count + 1),
        0 => With(Mode.AfterValue).AfterValue(b),
        _ => null,
    };
}
