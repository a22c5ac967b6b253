using System.Collections.Concurrent;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// Which tokens keep the output in its grammar, per grammar state: a bitset over the vocabulary, found by walking the
/// token trie from the state and cached under the state's key, so that the walk is paid once per distinct state.
/// Inside a region such as a JSON string, where most of the vocabulary is allowed, the tokens that stay inside are
/// found once per region key and only the tokens holding an exit byte (the closing quote) are walked per state.
/// Bounded: past <see cref="MaxCached"/> masks (16 KB each on a 129k vocabulary) the cache starts over.
/// </summary>
public sealed class TokenMasks(HfTokenizer tokenizer, int vocabularySize)
{
    private readonly HfTokenizer _tokenizer = tokenizer;
    private readonly ConcurrentDictionary<string, TokenTrie> _exitTries = new(StringComparer.Ordinal);
    // The tokens that stay inside each region: few keys, each costly to find, so never dropped with the cache.
    private readonly ConcurrentDictionary<string, ulong[]> _regions = new(StringComparer.Ordinal);

    public const int MaxCached = 1024;

    private readonly ClearingCache<ulong[]> _cache = new(MaxCached);

    public TokenTrie Trie { get; } = TokenTrie.Build(tokenizer, vocabularySize);

    /// <summary>Masks computed (cache misses) so far.</summary>
    public long Computed => Interlocked.Read(ref _computed);

    private long _computed;

    /// <summary>The tokens allowed after <paramref name="state"/>, one bit per id.</summary>
    public ulong[] Allowed(GrammarState state)
    {
        var key = state.Key;
        if (_cache.TryGet(key, out var mask)) return mask;
        mask = new ulong[(Trie.VocabularySize + 63) / 64];
        if (state.RegionKey is { } region)
        {
            // Inside a region: the tokens that stay in it (the same for every state of the region's key), and those
            // that leave it, searched among the tokens holding an exit byte only.
            var inside = _regions.GetOrAdd(region, _ => Inside(state));
            inside.CopyTo(mask, 0);
            var exits = _exitTries.GetOrAdd(Convert.ToHexString(state.RegionExits), _ => TokenTrie.Build(_tokenizer, Trie.VocabularySize, state.RegionExits));
            Walk(exits.Root, state, mask, stayInside: false);
        }
        else Walk(Trie.Root, state, mask, stayInside: false);
        Interlocked.Increment(ref _computed);
        return _cache.Add(key, mask);
    }

    private ulong[] Inside(GrammarState state)
    {
        var mask = new ulong[(Trie.VocabularySize + 63) / 64];
        Walk(Trie.Root, state, mask, stayInside: true);
        Interlocked.Increment(ref _computed);
        return mask;
    }

    private static void Walk(TokenTrie.Node node, GrammarState state, ulong[] mask, bool stayInside)
    {
        for (var i = 0; i < node.Bytes.Length; i++)
        {
            if (state.Advance(node.Bytes[i]) is not { } next || (stayInside && next.RegionKey is null)) continue;
            var child = node.Children[i];
            foreach (var id in child.Tokens) mask[id >> 6] |= 1UL << id;
            Walk(child, next, mask, stayInside);
        }
    }

    public static bool IsAllowed(ulong[] mask, int token) => (mask[token >> 6] & (1UL << token)) != 0;

    /// <summary>The state after all of <paramref name="bytes"/>, or null where they leave the language.</summary>
    public static GrammarState? Advance(GrammarState state, ReadOnlySpan<byte> bytes)
    {
        GrammarState? s = state;
        foreach (var b in bytes)
        {
            s = s.Advance(b);
            if (s is null) return null;
        }
        return s;
    }
}
