using System.Text;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// The output is exactly one of a list of strings (vLLM's guided_choice). No string may be a prefix of another: the
/// output ends when one is complete, and a shorter one would always cut a longer one off.
/// </summary>
public sealed class ChoiceGrammar : OutputGrammar
{
    public const int MaxChoices = 256;
    public const int MaxChoiceBytes = 1024;

    private readonly byte[][] _choices;
    // Names the list in mask cache keys: the same choices in another request reuse the masks.
    private readonly string _id;

    /// <exception cref="ArgumentException">No choices, too many or too long, empty, repeated, or one a prefix of another.</exception>
    public ChoiceGrammar(IReadOnlyList<string> choices)
    {
        if (choices.Count is 0 or > MaxChoices) throw new ArgumentException($"give 1 to {MaxChoices} choices");
        _choices = choices.Select(Encoding.UTF8.GetBytes).ToArray();
        if (_choices.Any(c => c.Length is 0 or > MaxChoiceBytes)) throw new ArgumentException($"each choice must be 1 to {MaxChoiceBytes} bytes of UTF-8");
        var sorted = _choices.Order(Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b))).ToArray();
        for (var i = 1; i < sorted.Length; i++)
            if (sorted[i].AsSpan().StartsWith(sorted[i - 1]))
                throw new ArgumentException($"the choice '{Encoding.UTF8.GetString(sorted[i - 1])}' is {(sorted[i].Length == sorted[i - 1].Length ? "given twice" : "the beginning of another")}");
        var list = new List<byte>();
        foreach (var c in _choices) list.AddRange([.. BitConverter.GetBytes(c.Length), .. c]);
        _id = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(list.ToArray()));
    }

    public override GrammarState Start() => new State(this, 0, Enumerable.Range(0, _choices.Length).ToArray());

    private sealed class State(ChoiceGrammar grammar, int at, int[] alive) : GrammarState
    {
        public override GrammarState? Advance(byte b)
        {
            var next = alive.Where(i => grammar._choices[i].Length > at && grammar._choices[i][at] == b).ToArray();
            return next.Length == 0 ? null : new State(grammar, at + 1, next);
        }

        public override bool IsComplete => alive.Length == 1 && grammar._choices[alive[0]].Length == at;

        public override string Key => $"choice|{grammar._id}|{at}|{string.Join(',', alive)}";
    }
}
