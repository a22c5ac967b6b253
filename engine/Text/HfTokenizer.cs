using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace MoeMesh.Engine.Text;

/// <summary>
/// A Hugging Face byte-level BPE tokenizer (tokenizer.json) on Microsoft.ML.Tokenizers' BPE, with
/// DeepSeek's Split pre-tokenizers and the added tokens matched verbatim before BPE.
/// </summary>
public sealed class HfTokenizer
{
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _added;
    private readonly Dictionary<int, (string Content, bool Special)> _addedById;
    private readonly Regex? _addedPattern;
    /// <summary>Every token's own bytes, made once: a vocabulary entry's (byte-level alphabet decoded), an added token's text in UTF-8.</summary>
    private readonly Dictionary<int, byte[]> _bytes = [];

    public int VocabularySize { get; }

    private HfTokenizer(BpeTokenizer bpe, Dictionary<int, (string, bool)> addedById)
    {
        _bpe = bpe;
        _addedById = addedById;
        foreach (var (token, id) in bpe.Vocabulary) _bytes.TryAdd(id, ByteLevelAlphabet.Decode(token));
        foreach (var (id, (content, _)) in addedById) _bytes[id] = Encoding.UTF8.GetBytes(content);
        _added = addedById.ToDictionary(kv => kv.Value.Item1, kv => kv.Key, StringComparer.Ordinal);
        if (_added.Count > 0)
        {
            // Longest first, so a token that contains another wins.
            var alternatives = _added.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape);
            _addedPattern = new Regex(string.Join("|", alternatives), RegexOptions.Compiled);
        }
        VocabularySize = Math.Max(bpe.Vocabulary.Count == 0 ? 0 : bpe.Vocabulary.Values.Max() + 1,
            addedById.Count == 0 ? 0 : addedById.Keys.Max() + 1);
    }

    public static HfTokenizer Load(string tokenizerJsonPath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(tokenizerJsonPath));
        var root = doc.RootElement;
        var model = root.GetProperty("model");
        var type = model.TryGetProperty("type", out var t) ? t.GetString() : "BPE";
        if (type != "BPE") throw new InvalidDataException($"{tokenizerJsonPath}: tokenizer model type '{type}' is not supported (BPE only)");
        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name, p.Value.GetInt32())).ToList();
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!)
            .ToList();
        Refuse(tokenizerJsonPath, root, model);
        var added = new Dictionary<int, (string, bool)>();
        if (root.TryGetProperty("added_tokens", out var addedTokens))
        {
            foreach (var a in addedTokens.EnumerateArray())
                added[a.GetProperty("id").GetInt32()] = (a.GetProperty("content").GetString()!, a.TryGetProperty("special", out var s) && s.GetBoolean());
        }
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new SplitSequencePreTokenizer(ReadPatterns(root)),
        };
        return new HfTokenizer(BpeTokenizer.Create(options), added);
    }

    /// <summary>
    /// Refuses what this tokenizer does not implement, rather than tokenize differently from Hugging Face: a
    /// normalizer (DeepSeek's files have none, or an empty sequence), added tokens that strip or match single words,
    /// byte fallback, merges ignored, a prefix space added by the byte-level step.
    /// </summary>
    private static void Refuse(string path, JsonElement root, JsonElement model)
    {
        static bool True(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;
        if (root.TryGetProperty("normalizer", out var n) && n.ValueKind == JsonValueKind.Object
            && !(n.GetProperty("type").GetString() == "Sequence" && n.GetProperty("normalizers").GetArrayLength() == 0))
            throw new InvalidDataException($"{path}: the normalizer '{n.GetProperty("type").GetString()}' is not supported");
        if (root.TryGetProperty("added_tokens", out var addedTokens))
            foreach (var a in addedTokens.EnumerateArray())
                if (True(a, "lstrip") || True(a, "rstrip") || True(a, "single_word"))
                    throw new InvalidDataException($"{path}: added token '{a.GetProperty("content").GetString()}' strips or matches single words, which is not supported");
        if (True(model, "byte_fallback") || True(model, "ignore_merges"))
            throw new InvalidDataException($"{path}: BPE byte_fallback and ignore_merges are not supported");
        if (root.TryGetProperty("pre_tokenizer", out var pre) && pre.ValueKind == JsonValueKind.Object)
        {
            var steps = pre.GetProperty("type").GetString() == "Sequence" ? pre.GetProperty("pretokenizers").EnumerateArray().ToList() : [pre];
            if (steps.Any(step => step.GetProperty("type").GetString() == "ByteLevel" && True(step, "add_prefix_space")))
                throw new InvalidDataException($"{path}: a byte-level pre-tokenizer that adds a prefix space is not supported");
        }
    }

    /// <summary>The Split regexes of the pre-tokenizer; a ByteLevel step with use_regex adds GPT-2's pattern.</summary>
    private static List<Regex> ReadPatterns(JsonElement root)
    {
        var patterns = new List<Regex>();
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object) return patterns;
        var steps = pre.GetProperty("type").GetString() == "Sequence" ? pre.GetProperty("pretokenizers").EnumerateArray().ToList() : [pre];
        foreach (var step in steps)
        {
            switch (step.GetProperty("type").GetString())
            {
                case "Split":
                    var pattern = step.GetProperty("pattern");
                    var text = pattern.TryGetProperty("Regex", out var rx) ? rx.GetString()! : Regex.Escape(pattern.GetProperty("String").GetString()!);
                    var behavior = step.TryGetProperty("behavior", out var b) ? b.GetString() : "Isolated";
                    if (behavior != "Isolated") throw new InvalidDataException($"Split behavior '{behavior}' is not supported");
                    patterns.Add(SplitSequencePreTokenizer.Compile(text));
                    break;
                case "ByteLevel":
                    if (!step.TryGetProperty("use_regex", out var useRegex) || useRegex.GetBoolean())
                        patterns.Add(SplitSequencePreTokenizer.Compile(Gpt2Pattern));
                    break;
                case "Digits":
                    patterns.Add(SplitSequencePreTokenizer.Compile(step.TryGetProperty("individual_digits", out var ind) && ind.GetBoolean() ? @"\p{N}" : @"\p{N}+"));
                    break;
                default:
                    throw new InvalidDataException($"pre-tokenizer '{step.GetProperty("type").GetString()}' is not supported");
            }
        }
        return patterns;
    }

    public int? TokenId(string token) =>
        _added.TryGetValue(token, out var id) ? id : _bpe.Vocabulary.TryGetValue(token, out var v) ? v : null;

    /// <summary>
    /// Encodes text; added tokens (such as &lt;｜User｜&gt;) written in the text map to their ids, except inside
    /// <paramref name="plain"/> spans (in order, not overlapping), whose text is always encoded as ordinary text
    /// (so that what a user writes cannot become a turn marker).
    /// </summary>
    /// <exception cref="NotTextException">The text holds a lone surrogate: not Unicode text (Hugging Face's tokenizers refuses it too).</exception>
    public List<int> Encode(string text, IReadOnlyList<(int Start, int Length)>? plain = null)
    {
        if (LoneSurrogate(text) is { } lone)
            throw new NotTextException($"the text holds a lone surrogate (U+{(int)text[lone]:X4}) at UTF-16 index {lone}: it is not Unicode text", lone);
        var ids = new List<int>();
        var cursor = 0;
        var span = 0; // plain spans are in order: the first one that does not end before the match
        for (var at = 0; _addedPattern is not null && at < text.Length;)
        {
            var m = _addedPattern.Match(text, at);
            if (!m.Success) break;
            while (plain is not null && span < plain.Count && plain[span].Start + plain[span].Length <= m.Index) span++;
            if (plain is not null && span < plain.Count && plain[span].Start < m.Index + m.Length)
            {
                at = m.Index + 1;
                continue;
            }
            if (m.Index > cursor) ids.AddRange(_bpe.EncodeToIds(text[cursor..m.Index]));
            ids.Add(_added[m.Value]);
            cursor = at = m.Index + m.Length;
        }
        if (cursor < text.Length) ids.AddRange(_bpe.EncodeToIds(text[cursor..]));
        return ids;
    }

    /// <summary>The index of the first surrogate that is not half of a pair, or null.</summary>
    private static int? LoneSurrogate(string text)
    {
        for (var i = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF'); i >= 0 && i < text.Length; i++)
        {
            if (!char.IsSurrogate(text[i])) continue;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
            else return i;
        }
        return null;
    }

    /// <summary>Decodes ids; ids past the vocabulary decode to nothing.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            if (_addedById.TryGetValue(id, out var added))
            {
                Flush();
                if (!(skipSpecialTokens && added.Special)) text.Append(added.Content);
            }
            else if (_bytes.ContainsKey(id))
            {
                run.Add(id);
            }
        }
        Flush();
        return text.ToString();

        void Flush()
        {
            if (run.Count == 0) return;
            text.Append(_bpe.Decode(run));
            run.Clear();
        }
    }

    /// <summary>
    /// The token's own bytes: a vocabulary entry's bytes (part of a UTF-8 character, for some), an added token's text
    /// in UTF-8 (none for a special one with <paramref name="skipSpecialTokens"/>); none for an id past the vocabulary.
    /// Concatenated over a sequence's tokens they are its text's UTF-8.
    /// </summary>
    public ReadOnlySpan<byte> TokenBytes(int id, bool skipSpecialTokens = false) =>
        skipSpecialTokens && _addedById.TryGetValue(id, out var added) && added.Special ? []
        : _bytes.TryGetValue(id, out var bytes) ? bytes
        : [];

    /// <summary>The token's text, as the completions API shows it in logprobs.</summary>
    public string TokenText(int id) =>
        _addedById.TryGetValue(id, out var added) ? added.Content : Decode([id], skipSpecialTokens: false);
}

/// <summary>A string that is not Unicode text (a lone surrogate at <see cref="Index"/>): it has no UTF-8 bytes to tokenize.</summary>
public sealed class NotTextException(string message, int index) : ArgumentException(message)
{
    public int Index { get; } = index;
}
