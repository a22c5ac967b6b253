namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// JSON's lexical pieces read byte by byte, shared by the grammars: string bodies (valid UTF-8, no control
/// characters, JSON's escapes) and numbers, each as a small phase machine.
/// </summary>
internal static class JsonSyntax
{
    public static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\t' or (byte)'\r';

    /// <summary>
    /// One byte of a string body after the opening quote. <paramref name="sub"/> is the escape phase (1 after a
    /// backslash, 2-6 in a \u escape) or the narrowed range of the next UTF-8 continuation byte (10-13);
    /// <paramref name="count"/> the continuation bytes due. Returns false where the byte cannot follow;
    /// <paramref name="closed"/> is set for the closing quote. Without <paramref name="escapes"/> a backslash is refused.
    /// </summary>
    public static bool StringStep(ref int sub, ref int count, byte b, bool escapes, out bool closed)
    {
        closed = false;
        // The first continuation byte after E0, ED, F0 and F4 is narrower: no overlong forms, no surrogates, nothing past U+10FFFF.
        if (count > 0) return Utf8Step(ref sub, ref count, b);
        switch (sub)
        {
            case 1: // after a backslash
                if (b == 'u') { sub = 2; return true; }
                sub = 0;
                return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t';
            case >= 2 and <= 6: // \uXXXX, phases 2-5 for the digits (6: a second digit after 'd', which must be 0-7)
                if (!Uri.IsHexDigit((char)b)) return false;
                if (sub == 2 && b is (byte)'d' or (byte)'D') { sub = 6; return true; }
                // No surrogate escapes (D800-DFFF): half a pair alone is not text.
                if (sub == 6) { sub = 4; return b is >= (byte)'0' and <= (byte)'7'; }
                sub = sub == 5 ? 0 : sub + 1;
                return true;
        }
        if (b < 0x20 || (b == '\\' && !escapes)) return false;
        if (b == '\\')
        {
            (sub, count) = (1, 0);
            return true;
        }
        closed = b == '"';
        return Utf8Step(ref sub, ref count, b);
    }

    /// <summary>
    /// One byte of UTF-8 text: <paramref name="sub"/> narrows the next continuation byte's range (10-13, see
    /// <see cref="StringStep"/>), <paramref name="count"/> is the continuation bytes due. False where the byte cannot follow.
    /// </summary>
    public static bool Utf8Step(ref int sub, ref int count, byte b)
    {
        if (count > 0)
        {
            var (low, high) = sub switch { 10 => (0xA0, 0xBF), 11 => (0x80, 0x9F), 12 => (0x90, 0xBF), 13 => (0x80, 0x8F), _ => (0x80, 0xBF) };
            if (b < low || b > high) return false;
            (sub, count) = (0, count - 1);
            return true;
        }
        (sub, count) = b switch
        {
            < 0x80 => (0, 0),
            >= 0xC2 and <= 0xDF => (0, 1),
            0xE0 => (10, 2),
            0xED => (11, 2),
            >= 0xE1 and <= 0xEF => (0, 2),
            0xF0 => (12, 3),
            0xF4 => (13, 3),
            >= 0xF1 and <= 0xF3 => (0, 3),
            _ => (-1, 0),
        };
        return sub >= 0;
    }

    /// <summary>
    /// The phase a number's first byte starts (1 after '-', 2 in the integer, 3 after a leading 0), or 0 where the
    /// byte cannot start a number.
    /// </summary>
    public static int NumberStart(byte b) => b switch
    {
        (byte)'-' => 1,
        (byte)'0' => 3,
        >= (byte)'1' and <= (byte)'9' => 2,
        _ => 0,
    };

    /// <summary>
    /// The next phase of a number of <paramref name="length"/> bytes (phases: 1 after '-', 2 in the integer, 3 after
    /// a leading 0, 4 after '.', 5 in the fraction, 6 after 'e', 7 after the exponent's sign, 8 in the exponent), 0
    /// where the byte does not continue it but the number may end before it (the byte is then read after the number),
    /// or -1 where neither. Numbers stay within <paramref name="maxLength"/> bytes and never enter a phase that needs
    /// a digit the bound leaves no room for; <paramref name="integer"/> numbers have no fraction or exponent.
    /// </summary>
    public static int NumberStep(int phase, int length, byte b, bool integer, int maxLength)
    {
        var digit = b is >= (byte)'0' and <= (byte)'9';
        var next = (phase, b) switch
        {
            (1, (byte)'0') => 3,
            (1, _) when digit => 2,
            (2, _) when digit => 2,
            (2 or 3, (byte)'.') when !integer => 4,
            (2 or 3 or 5, (byte)'e' or (byte)'E') when !integer => 6,
            (4 or 5, _) when digit => 5,
            (6, (byte)'+' or (byte)'-') => 7,
            (6 or 7 or 8, _) when digit => 8,
            _ => 0,
        };
        var needs = next is 1 or 4 or 6 or 7 ? 1 : 0;
        if (next != 0) return length + 1 + needs <= maxLength ? next : -1;
        return NumberMayEnd(phase) ? 0 : -1;
    }

    public static bool NumberMayEnd(int phase) => phase is 2 or 3 or 5 or 8;
}
