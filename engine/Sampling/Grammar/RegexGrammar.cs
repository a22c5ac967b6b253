namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// The whole output matches a regular expression (vLLM's guided_regex), in the subset <see cref="Pattern"/> takes
/// (read as Python reads it where the two differ: {,n} is {0,n}, and a literal brace must be escaped), anchored at
/// both ends. Where the expression is matched but could go on (\d+ after a digit) the output may end:
/// the model's end-of-sequence token is allowed there; where nothing can follow, the output ends. Characters stay in
/// the Basic Multilingual Plane. Grammars are kept by their expression, so that masks are reused across requests.
/// </summary>
public sealed class RegexGrammar : OutputGrammar
{
    private const int MaxCached = 256;
    private static readonly ClearingCache<RegexGrammar> Cache = new(MaxCached);
    private static long _next;

    private readonly Pattern _pattern;
    private readonly long _id = Interlocked.Increment(ref _next);

    private RegexGrammar(Pattern pattern) => _pattern = pattern;

    /// <exception cref="ArgumentException">A construct outside the subset, or an expression that matches nothing.</exception>
    public static RegexGrammar For(string regex)
    {
        if (Cache.TryGet(regex, out var grammar)) return grammar;
        var body = regex.StartsWith('^') ? regex[1..] : regex;
        if (body.EndsWith('$') && !EndsEscaped(body)) body = body[..^1];
        grammar = new RegexGrammar(new Pattern($"^(?:{body})$", python: true));
        if (grammar.Start().IsComplete) throw new ArgumentException("the expression matches only the empty string");
        return Cache.Add(regex, grammar);
    }

    /// <summary>Whether the string's last character is escaped (an odd run of backslashes before it).</summary>
    private static bool EndsEscaped(string s)
    {
        var n = 0;
        for (var i = s.Length - 2; i >= 0 && s[i] == '\\'; i--) n++;
        return n % 2 == 1;
    }

    public override GrammarState Start() => new State(this, _pattern.Initial, 0, 0, 0, 0);

    private sealed class State(RegexGrammar grammar, int set, int sub, int count, int value, int length) : GrammarState
    {
        private Pattern P => grammar._pattern;

        public override GrammarState? Advance(byte b)
        {
            if (count == 0 && b >= 0xF0) return null; // past U+FFFF: two units to the expression
            var (s, c) = (sub, count);
            if (!JsonSyntax.Utf8Step(ref s, ref c, b)) return null;
            int v = value, len = length;
            var next = P.StepUtf8(set, b, lead: count == 0, c, ref v, ref len);
            return next < 0 ? null : new State(grammar, next, s, c, c == 0 ? 0 : v, c == 0 ? 0 : len);
        }

        private bool Between => sub == 0 && count == 0;

        public override bool IsComplete => Between && P.Accepts(set) && !P.CanStep(set, 0, 0xFFFF);

        public override bool MayEnd => Between && P.Accepts(set);

        public override string Key => $"regex|{grammar._id}|{set}|{sub}|{count}|{value}|{length}";
    }
}
