using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace MoeMesh.Engine.Text;

/// <summary>
/// Hugging Face's Sequence of Split pre-tokenizers with "Isolated" behaviour: each regex splits every
/// piece of the previous one into matches and the gaps between them.
/// </summary>
public sealed class SplitSequencePreTokenizer(IReadOnlyList<Regex> patterns) : PreTokenizer
{
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text.ToString());

    private List<(int Offset, int Length)> Split(string text)
    {
        var pieces = new List<(int Offset, int Length)> { (0, text.Length) };
        foreach (var regex in patterns)
        {
            var next = new List<(int, int)>(pieces.Count * 2);
            foreach (var (offset, length) in pieces)
            {
                var cursor = offset;
                var end = offset + length;
                for (var m = regex.Match(text, offset, length); m.Success; m = m.NextMatch())
                {
                    if (m.Length == 0) continue;
                    if (m.Index > cursor) next.Add((cursor, m.Index - cursor));
                    next.Add((m.Index, m.Length));
                    cursor = m.Index + m.Length;
                }
                if (end > cursor) next.Add((cursor, end - cursor));
            }
            pieces = next;
        }
        return pieces;
    }

    /// <summary>A pattern of tokenizer.json as a .NET regex that matches whole code points (<see cref="CodePointPattern"/>).</summary>
    public static Regex Compile(string pattern) =>
        new(CodePointPattern.Translate(pattern), RegexOptions.Compiled | RegexOptions.CultureInvariant);
}
