using System.Text;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Demo;

/// <summary>Learns byte-level BPE merges from a text, so the demo model ships a real tokenizer.json.</summary>
public static class BpeTrainer
{
    /// <summary>Returns the vocabulary (256 byte tokens first, then merged tokens) and the merges in order.</summary>
    public static (List<string> Vocab, List<string> Merges) Train(string corpus, SplitSequencePreTokenizer pre, int maxMerges)
    {
        var vocab = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.Encode([(byte)b])).ToList();
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (offset, length) in pre.PreTokenize(corpus))
        {
            var word = ByteLevelAlphabet.Encode(Encoding.UTF8.GetBytes(corpus.Substring(offset, length)));
            words[word] = words.GetValueOrDefault(word) + 1;
        }
        var split = words.Select(w => (Symbols: w.Key.Select(c => c.ToString()).ToList(), Count: w.Value)).ToList();
        var merges = new List<string>();
        while (merges.Count < maxMerges)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (symbols, count) in split)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1, StringComparer.Ordinal)
                .ThenBy(p => p.Key.Item2, StringComparer.Ordinal)
                .First();
            if (best.Value < 2) break;
            var (a, b) = best.Key;
            merges.Add($"{a} {b}");
            vocab.Add(a + b);
            foreach (var (symbols, _) in split)
            {
                for (var i = 0; i + 1 < symbols.Count; i++)
                {
                    if (symbols[i] != a || symbols[i + 1] != b) continue;
                    symbols[i] = a + b;
                    symbols.RemoveAt(i + 1);
                }
            }
        }
        return (vocab, merges);
    }
}
