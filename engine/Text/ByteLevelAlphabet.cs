namespace MoeMesh.Engine.Text;

/// <summary>GPT-2's byte-to-character map used by byte-level BPE vocabularies (space is 'Ġ').</summary>
public static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = Build();

    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    private static readonly Dictionary<char, byte> CharToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    /// <summary>The bytes a vocabulary entry stands for; a character outside the alphabet (none in a byte-level vocabulary) as its UTF-8 bytes.</summary>
    public static byte[] Decode(string token)
    {
        var bytes = new List<byte>(token.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in token.EnumerateRunes())
        {
            if (rune.IsBmp && CharToByte.TryGetValue((char)rune.Value, out var b)) bytes.Add(b);
            else bytes.AddRange(utf8[..rune.EncodeToUtf8(utf8)]);
        }
        return [.. bytes];
    }

    private static char[] Build()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }
}
