using System.Text;
using MoeMesh.Engine.Text;
using MoeMesh.Testing;

namespace MoeMesh.Engine.Tests.Text;

/// <summary>
/// DeepSeek-V3's real tokenizer files, encoded by this engine and by Hugging Face's tokenizers library (the oracle,
/// run by node): every id equal, decoding gives the text back and the tokens' own bytes its UTF-8, over a corpus of scripts, code, whitespace,
/// emoji, astral letters and digits, control characters and added tokens inside text, and a few thousand seeded
/// random strings.
/// </summary>
public sealed class HuggingFaceConformanceTests
{
    private static readonly Lazy<HfTokenizer> V3 = new(() => HfTokenizer.Load(TokenizerOracle.DeepSeekV3Tokenizer));

    /// <summary>Strings chosen for what tokenizers get wrong: astral characters after spaces, scripts, whitespace runs.</summary>
    public static readonly string[] Corpus =
    [
        " 😀 😀😀 ",
        "😀a 😀, 𝑥y",
        "Let 𝑥 + 𝑦 = 𝑧 and 𝟙𝟚𝟛 be math letters and digits.",
        "Flags 🇫🇷🇯🇵 🇺🇳, a family 👨‍👩‍👧‍👦 and a thumb 👍🏽; hearts ❤️ ♥",
        "CJK extension B 𠀀𠀁 𪚥𫝀 𰀀 and plain 中文字符 ひらがな カタカナ 한국어",
        "Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย, ქართული, Ꭰ Cherokee",
        "  leading and trailing  \t\ttabs\n\n\n  blank lines\r\n\r\nCRLF   ",
        "def f(x):\n    return x ** 2  # squares\n\nprint(f(12345), 1_000_000, 3.14159)",
        "numbers 1 12 123 1234 12345 ١٢٣٤ ४५६ 七八九 ⅷ ½",
        "punctuation!!! ... ?? ¿¡ «quotes» “curly” ‘single’ — dashes – and … ellipsis",
        "control \u0001\u0007\u001b[0m characters \u007f and \u0085 next line, \u00a0nbsp\u2009thin\u3000ideographic",
        "zero width \u200b\u200c\u200d joiners and \ufeff a BOM, \u2028 line \u2029 paragraph",
        "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi 😀<｜Assistant｜>Hello<｜end▁of▁sentence｜>",
        "tokens touching text:<｜User｜>x<｜Assistant｜> y",
        "variation ︎selectors \ufe0f and combining e\u0301 a\u0308 ñ n\u0303",
        "Emoji sequences: 🏳️‍🌈 🧑🏿‍💻 👩🏻‍❤️‍💋‍👨🏼 1️⃣ #️⃣",
        "Old scripts: 𐌰𐌱𐌲 Gothic, 𓀀𓀁 hieroglyphs, 𝄞 music, 🀄 mahjong",
        "Math: ∀x∈ℝ, ∑ᵢ xᵢ² ≤ ∞; 𝔄𝔅 𝕏𝕐 𝒜ℬ",
        "URLs https://example.com/a?b=c&d=e#f and emails a.b@c.de",
        "mixed😀emoji中文𝑥text123",
        string.Concat(Enumerable.Repeat("A long text with words, numbers 42 and emoji 🎉 repeated. ", 400)),
    ];

    [Fact]
    public void Corpus_EncodesAsHuggingFaceDoes_AndDecodesBack() => AssertConformant(Corpus);

    [Fact]
    public void RandomStrings_EncodeAsHuggingFaceDoes_AndDecodeBack() => AssertConformant(RandomStrings(3000, seed: 14));

    /// <summary>
    /// Every code point of the planes with assigned characters (0 to 3 and 14; every 97th of the others), each in a
    /// context whose split shows its class to every pattern: after a letter, after a space, before punctuation
    /// ("x" + c + " " + c + "."). A character whose category the engine's tables and Hugging Face's see differently
    /// splits differently.
    /// </summary>
    [Fact]
    public void EveryCodePoint_SplitsAsHuggingFaceDoes()
    {
        var codePoints = Enumerable.Range(0, 0x110000)
            .Where(c => c is < 0xD800 or > 0xDFFF && (c < 0x40000 || c is >= 0xE0000 and < 0xE1000 || c % 97 == 0))
            .ToList();
        var texts = codePoints.Chunk(256).Select(chunk =>
        {
            var text = new StringBuilder();
            foreach (var c in chunk)
            {
                var s = char.ConvertFromUtf32(c);
                text.Append('x').Append(s).Append(' ').Append(s).Append('.');
            }
            return text.ToString();
        }).ToList();
        AssertConformant(texts);
    }

    /// <summary>
    /// Seeded random id sequences (tokens holding parts of UTF-8 characters among them, and added tokens) decode as
    /// Hugging Face decodes them, skipping special tokens and keeping them, and so does the text a stream releases
    /// token by token.
    /// </summary>
    [Fact]
    public void RandomIds_DecodeAsHuggingFaceDoes()
    {
        var random = new Random(5);
        var vocabulary = V3.Value.VocabularySize;
        var sequences = Enumerable.Range(0, 2000)
            .Select(_ => Enumerable.Range(0, random.Next(1, 21)).Select(_ => random.Next(10) == 0 ? random.Next(128000, vocabulary) : random.Next(128000)).ToArray())
            .ToList();
        var oracle = TokenizerOracle.Run(TokenizerOracle.DeepSeekV3Tokenizer, [], sequences);
        var wrong = new List<string>();
        for (var i = 0; i < sequences.Count; i++)
        {
            var (skipped, kept) = (V3.Value.Decode(sequences[i]), V3.Value.Decode(sequences[i], skipSpecialTokens: false));
            var streamed = Streamed(sequences[i]);
            if (skipped != oracle.Decoded[i] || kept != oracle.DecodedWithSpecial[i] || streamed != oracle.Decoded[i])
                wrong.Add($"[{string.Join(",", sequences[i])}]: {Escape(skipped)} / {Escape(kept)} / streamed {Escape(streamed)} against {Escape(oracle.Decoded[i])} / {Escape(oracle.DecodedWithSpecial[i])}");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {sequences.Count} differ:\n{string.Join("\n", wrong.Take(15))}");
    }

    /// <summary>The text a stream releases for these output tokens fed one at a time, as the engine feeds them.</summary>
    private static string Streamed(int[] ids)
    {
        var output = new MoeMesh.Engine.Runtime.OutputText(V3.Value, []);
        var text = new StringBuilder();
        for (var i = 0; i < ids.Length; i++) text.Append(output.Update(ids, 0, i + 1, final: i == ids.Length - 1).Delta);
        return text.ToString();
    }

    private static void AssertConformant(IReadOnlyList<string> texts)
    {
        var oracle = TokenizerOracle.Run(TokenizerOracle.DeepSeekV3Tokenizer, texts);
        var wrong = new List<string>();
        for (var i = 0; i < texts.Count; i++)
        {
            var ids = V3.Value.Encode(texts[i]);
            if (!ids.SequenceEqual(oracle.Ids[i]))
                wrong.Add($"{Escape(texts[i])}: [{string.Join(",", ids.Take(40))}] against [{string.Join(",", oracle.Ids[i].Take(40))}]");
            else if (V3.Value.Decode(ids, skipSpecialTokens: false) != texts[i])
                wrong.Add($"{Escape(texts[i])}: decodes to {Escape(V3.Value.Decode(ids, skipSpecialTokens: false))}");
            else if (!ids.SelectMany(id => V3.Value.TokenBytes(id).ToArray()).SequenceEqual(Encoding.UTF8.GetBytes(texts[i])))
                wrong.Add($"{Escape(texts[i])}: the tokens' own bytes are not the text's UTF-8");
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {texts.Count} differ:\n{string.Join("\n", wrong.Take(15))}");
    }

    /// <summary>
    /// Seeded strings of 1 to 40 code points drawn from pools: ASCII, whitespace and line breaks, the Basic
    /// Multilingual Plane, the supplementary planes (assigned or not), and DeepSeek's added-token text; never a lone
    /// surrogate (not text).
    /// </summary>
    public static List<string> RandomStrings(int count, int seed)
    {
        var random = new Random(seed);
        var whitespace = new[] { ' ', '\t', '\n', '\r', '\u00a0', '\u2003', '\u3000', '\u000b', '\u000c', '\u0085' };
        var pieces = new[] { "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "'s", "'ll" };
        var list = new List<string>(count);
        for (var n = 0; n < count; n++)
        {
            var text = new StringBuilder();
            var length = random.Next(1, 41);
            for (var i = 0; i < length; i++)
            {
                int codePoint;
                switch (random.Next(10))
                {
                    case 0 or 1 or 2: codePoint = random.Next(0x20, 0x7F); break;
                    case 3: codePoint = whitespace[random.Next(whitespace.Length)]; break;
                    case 4 or 5:
                        do codePoint = random.Next(0x80, 0x10000); while (codePoint is >= 0xD800 and <= 0xDFFF);
                        break;
                    case 6: codePoint = random.Next(0x1F300, 0x1FAFF); break; // emoji blocks
                    case 7: codePoint = random.Next(0x1D400, 0x1D800); break; // math alphanumerics
                    case 8: codePoint = random.Next(0x10000, 0x110000); break;
                    default:
                        text.Append(pieces[random.Next(pieces.Length)]);
                        continue;
                }
                text.Append(char.ConvertFromUtf32(codePoint));
            }
            list.Add(text.ToString());
        }
        return list;
    }

    private static string Escape(string s)
    {
        var shown = s.Length > 60 ? s[..60] + "…" : s;
        return "\"" + string.Concat(shown.EnumerateRunes().Select(r => r.Value is < 0x20 or (>= 0x7F and < 0xA0) || r.Value > 0xFFFF ? $"\\u{{{r.Value:X}}}" : r.ToString())) + "\"";
    }
}
