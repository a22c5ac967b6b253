using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// The vocabulary as a trie over the tokens' bytes: a token mask search walks it once, advancing the grammar state a
/// byte per edge, so that tokens sharing a prefix share the work and a rejected byte prunes every token below it.
/// Special tokens (beginning and end of sequence) are not text and are not in it.
/// </summary>
public sealed class TokenTrie
{
    internal sealed class Node
    {
        public byte[] Bytes = [];
        public Node[] Children = [];
        public int[] Tokens = []; // tokens whose bytes end here
    }

    internal Node Root { get; }

    /// <summary>Size of a mask: the vocabulary's ids.</summary>
    public int VocabularySize { get; }

    /// <summary>Trie nodes, the root excluded: the most steps one mask search takes.</summary>
    public int NodeCount { get; }

    private TokenTrie(Node root, int vocabularySize, int nodes)
    {
        Root = root;
        VocabularySize = vocabularySize;
        NodeCount = nodes;
    }

    /// <summary>The trie of the vocabulary's tokens, or of those holding one of <paramref name="holding"/>'s bytes.</summary>
    public static TokenTrie Build(HfTokenizer tokenizer, int vocabularySize, byte[]? holding = null)
    {
        var root = new Building();
        var nodes = 0;
        for (var id = 0; id < Math.Min(vocabularySize, tokenizer.VocabularySize); id++)
        {
            var bytes = tokenizer.TokenBytes(id, skipSpecialTokens: true);
            if (bytes.IsEmpty || (holding is not null && bytes.IndexOfAny(holding) < 0)) continue;
            var node = root;
            foreach (var b in bytes)
            {
                if (!node.Children.TryGetValue(b, out var child))
                {
                    node.Children[b] = child = new Building();
                    nodes++;
                }
                node = child;
            }
            node.Tokens.Add(id);
        }
        return new TokenTrie(root.Freeze(), vocabularySize, nodes);
    }

    private sealed class Building
    {
        public readonly SortedDictionary<byte, Building> Children = [];
        public readonly List<int> Tokens = [];

        public Node Freeze() => new()
        {
            Bytes = [.. Children.Keys],
            Children = [.. Children.Values.Select(c => c.Freeze())],
            Tokens = [.. Tokens],
        };
    }
}
