using System.Globalization;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// A JSON Schema "pattern" (ECMA-262 regular expression, matched anywhere in the string unless anchored) as an NFA
/// over UTF-16 code units, the unit both ECMA-262 and .NET match by. The subset: literals, '.', classes (ranges,
/// negation, \d \w \s in positive classes), groups (capturing, non-capturing, named), alternation, the quantifiers
/// * + ? {n} {n,} {n,m} (lazy or not: the language is the same), and ^ and $ at the pattern's ends. \d, \w and \s
/// are their ASCII sets and '.' excludes every line terminator, which is what ECMA-262 and .NET agree on. Refused, by
/// name: backreferences, lookaround, word boundaries, \D \W \S, and code points past U+FFFF or surrogates.
/// </summary>
public sealed partial class Pattern
{
    /// <summary>The largest repetition count.</summary>
    public const int MaxCount = 256;

    [System.Text.RegularExpressions.GeneratedRegex("^[0-9]*(,[0-9]*)?$")]
    private static partial System.Text.RegularExpressions.Regex CountForm();

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z_$][A-Za-z0-9_$]*$")]
    private static partial System.Text.RegularExpressions.Regex GroupName();

    public const int MaxStates = 4096;
    public const int MaxLength = 1024;

    /// <summary>Sets of automaton states named so far (each a state of the lazily built DFA) past which new ones are dead ends.</summary>
    public const int MaxDfaStates = 8192;

    /// <summary>Cached transitions past which steps are computed each time (the memory a pattern holds stays bounded).</summary>
    private const int MaxCachedSteps = 1 << 20;

    private readonly List<(int Lo, int Hi, int To)>[] _edges;
    private readonly List<int>[] _eps;
    private readonly bool[] _live;
    private readonly bool _anchoredEnd;

    // The DFA, built as strings are read: each distinct set of live NFA states gets an id.
    private readonly Lock _lock = new();
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly List<int[]> _sets = [];
    private readonly Dictionary<(int Id, int Unit), int> _steps = [];
    private readonly Dictionary<(int Id, int Lo, int Hi), bool> _canStep = [];

    internal int Accept { get; }

    /// <summary>The DFA state before the first unit.</summary>
    internal int Initial { get; }

    /// <summary>Automaton states, for the budget of a schema's patterns.</summary>
    public int States => _edges.Length;

    /// <exception cref="ArgumentException">A construct outside the subset, a pattern too long or too large, or one that matches nothing.</exception>
    public Pattern(string pattern, bool python = false)
    {
        if (pattern.Length > MaxLength) throw new ArgumentException($"a pattern of more than {MaxLength} characters");
        var b = new Builder();
        var p = new Parser(pattern, b, python);
        var (start, accept, anchoredStart, anchoredEnd) = p.Top();
        if (!anchoredStart)
        {
            // Matched anywhere: any units may come before the match...
            var s0 = b.State();
            b.Edge(s0, 0, 0xFFFF, s0);
            b.Eps(s0, start);
            start = s0;
        }
        // ...and after it.
        if (!anchoredEnd) b.Edge(accept, 0, 0xFFFF, accept);
        (Accept, _anchoredEnd) = (accept, anchoredEnd);
        _edges = b.Edges.ToArray();
        _eps = b.Epsilons.ToArray();
        _live = Live();
        var initial = Closure([start]);
        if (initial.Length == 0) throw new ArgumentException("the pattern matches no string");
        Initial = Id(initial);
    }

    /// <summary>The DFA state after unit <paramref name="unit"/>, or -1 where no match can follow.</summary>
    internal int Step(int id, int unit)
    {
        lock (_lock)
        {
            if (_steps.TryGetValue((id, unit), out var known)) return known;
            var targets = new List<int>();
            foreach (var s in _sets[id])
                foreach (var (lo, hi, to) in _edges[s])
                    if (unit >= lo && unit <= hi) targets.Add(to);
            var next = targets.Count == 0 ? -1 : Closure(targets) is { Length: > 0 } set ? Id(set) : -1;
            if (_steps.Count < MaxCachedSteps) _steps[(id, unit)] = next;
            return next;
        }
    }

    /// <summary>Whether some unit in [lo, hi] (surrogates aside) leads from DFA state <paramref name="id"/> towards a match.</summary>
    internal bool CanStep(int id, int lo, int hi)
    {
        lock (_lock)
        {
            if (_canStep.TryGetValue((id, lo, hi), out var known)) return known;
            var can = false;
            foreach (var s in _sets[id])
                foreach (var (elo, ehi, to) in _edges[s])
                {
                    var (a, z) = (Math.Max(lo, elo), Math.Min(hi, ehi));
                    // Some unit of [a, z] that is not a surrogate, into a state from which the end is reachable.
                    if (a <= z && (a < 0xD800 || z > 0xDFFF) && _live[to]) can = true;
                }
            if (_canStep.Count < MaxCachedSteps) _canStep[(id, lo, hi)] = can;
            return can;
        }
    }

    /// <summary>
    /// One byte of a UTF-8 character, <paramref name="due"/> continuation bytes still due after it (its validity
    /// checked already): the DFA state once the character is complete; <paramref name="id"/> while some character it
    /// can still become leads towards a match; -1 otherwise. <paramref name="value"/> and <paramref name="length"/>
    /// carry the character's bits so far and its length in bytes.
    /// </summary>
    internal int StepUtf8(int id, byte b, bool lead, int due, ref int value, ref int length)
    {
        if (lead && due == 0) return Step(id, b);
        if (lead) (value, length) = (b & (due == 1 ? 0x1F : 0x0F), due + 1);
        else value = (value << 6) | (b & 0x3F);
        if (due == 0) return Step(id, value);
        // The characters this prefix can still become: no overlong forms below the length's first code point.
        return CanStep(id, Math.Max(value << (6 * due), length == 3 ? 0x800 : 0x80), ((value + 1) << (6 * due)) - 1) ? id : -1;
    }

    internal bool Accepts(int id)
    {
        lock (_lock) return Array.BinarySearch(_sets[id], Accept) >= 0;
    }

    /// <summary>Whether the match is made and, the pattern not anchored at the end, whatever follows keeps it.</summary>
    internal bool Settled(int id) => !_anchoredEnd && Accepts(id);

    /// <summary>The DFA state of a set of NFA states (sorted, live, closed): an id, new where not seen (-1 past the bound).</summary>
    private int Id(int[] set)
    {
        var key = string.Join(',', set);
        if (_ids.TryGetValue(key, out var id)) return id;
        if (_sets.Count >= MaxDfaStates) return -1;
        _sets.Add(set);
        return _ids[key] = _sets.Count - 1;
    }

    /// <summary>The live states reachable from <paramref name="from"/> through empty moves, sorted.</summary>
    private int[] Closure(IEnumerable<int> from)
    {
        var seen = new HashSet<int>();
        var stack = new Stack<int>();
        foreach (var s in from)
            if (seen.Add(s)) stack.Push(s);
        while (stack.Count > 0)
            foreach (var t in _eps[stack.Pop()])
                if (seen.Add(t)) stack.Push(t);
        return seen.Where(s => _live[s]).Order().ToArray();
    }

    /// <summary>The states from which the accepting state is reachable.</summary>
    private bool[] Live()
    {
        var back = Enumerable.Range(0, _edges.Length).Select(_ => new List<int>()).ToArray();
        for (var s = 0; s < _edges.Length; s++)
        {
            foreach (var (lo, hi, to) in _edges[s])
                if (lo < 0xD800 || hi > 0xDFFF) back[to].Add(s);
            foreach (var t in _eps[s]) back[t].Add(s);
        }
        var live = new bool[_edges.Length];
        var stack = new Stack<int>([Accept]);
        live[Accept] = true;
        while (stack.Count > 0)
            foreach (var s in back[stack.Pop()])
                if (!live[s]) { live[s] = true; stack.Push(s); }
        return live;
    }

    private sealed class Builder
    {
        public readonly List<List<(int, int, int)>> Edges = [];
        public readonly List<List<int>> Epsilons = [];

        public int State()
        {
            if (Edges.Count >= MaxStates) throw new ArgumentException($"the pattern needs more than {MaxStates} automaton states (large repetition counts)");
            Edges.Add([]);
            Epsilons.Add([]);
            return Edges.Count - 1;
        }

        public void Edge(int from, int lo, int hi, int to) => Edges[from].Add((lo, hi, to));
        public void Eps(int from, int to) => Epsilons[from].Add(to);
    }

    /// <summary>A fragment of the automaton: build it again for each copy a repetition needs.</summary>
    private delegate (int Start, int End) Fragment();

    private sealed class Parser(string p, Builder b, bool python)
    {
        private int _at;

        public (int Start, int End, bool AnchoredStart, bool AnchoredEnd) Top()
        {
            var anchoredStart = p.StartsWith('^');
            if (anchoredStart) _at = 1;
            var anchoredEnd = p.Length > _at && p.EndsWith('$') && !EscapedAt(p.Length - 1);
            var end = anchoredEnd ? p.Length - 1 : p.Length;
            var body = Alternation(end);
            if (_at != end) throw Unsupported($"'{p[_at]}' at {_at}");
            if ((anchoredStart || anchoredEnd) && HasTopLevelBar(end))
                throw new ArgumentException("^ or $ beside a top-level '|' is not supported: put the alternatives in a group");
            var (s, e) = body();
            return (s, e, anchoredStart, anchoredEnd);
        }

        private bool EscapedAt(int i)
        {
            var n = 0;
            while (i - 1 - n >= 0 && p[i - 1 - n] == '\\') n++;
            return n % 2 == 1;
        }

        private bool HasTopLevelBar(int end)
        {
            var (depth, inClass) = (0, false);
            for (var i = 0; i < end; i++)
            {
                var c = p[i];
                if (c == '\\') { i++; continue; }
                if (inClass) { if (c == ']') inClass = false; continue; }
                if (c == '[') inClass = true;
                else if (c == '(') depth++;
                else if (c == ')') depth--;
                else if (c == '|' && depth == 0) return true;
            }
            return false;
        }

        private static ArgumentException Unsupported(string what) => new($"the pattern's {what} is not supported");

        private Fragment Alternation(int end)
        {
            var options = new List<Fragment> { Concatenation(end) };
            while (_at < end && p[_at] == '|')
            {
                _at++;
                options.Add(Concatenation(end));
            }
            if (options.Count == 1) return options[0];
            return () =>
            {
                var (s, e) = (b.State(), b.State());
                foreach (var o in options)
                {
                    var (os, oe) = o();
                    b.Eps(s, os);
                    b.Eps(oe, e);
                }
                return (s, e);
            };
        }

        private Fragment Concatenation(int end)
        {
            var items = new List<Fragment>();
            while (_at < end && p[_at] is not ('|' or ')')) items.Add(Repetition(end));
            return () =>
            {
                var s = b.State();
                var e = s;
                foreach (var item in items)
                {
                    var (i, o) = item();
                    b.Eps(e, i);
                    e = o;
                }
                return (s, e);
            };
        }

        private Fragment Repetition(int end)
        {
            var atom = Atom(end);
            if (_at >= end) return atom;
            int min, max;
            switch (p[_at])
            {
                case '*': (min, max) = (0, -1); _at++; break;
                case '+': (min, max) = (1, -1); _at++; break;
                case '?': (min, max) = (0, 1); _at++; break;
                case '{' when Counts(out min, out max): break;
                default: return atom;
            }
            if (_at < end && p[_at] == '?') _at++; // lazy: the same language
            if (_at < end && p[_at] is '*' or '+' or '?' or '{') throw Unsupported($"quantifier after a quantifier at {_at}");
            return () =>
            {
                var s = b.State();
                var e = s;
                for (var k = 0; k < min; k++)
                {
                    var (i, o) = atom();
                    b.Eps(e, i);
                    e = o;
                }
                if (max < 0)
                {
                    var (i, o) = atom();
                    b.Eps(e, i);
                    b.Eps(o, e);
                    return (s, e);
                }
                var end2 = b.State();
                b.Eps(e, end2);
                for (var k = min; k < max; k++)
                {
                    var (i, o) = atom();
                    b.Eps(e, i);
                    b.Eps(o, end2);
                    e = o;
                }
                return (s, end2);
            };
        }

        /// <summary>{n}, {n,} or {n,m}; false (and nothing read) where the brace does not start one, as ECMA-262 reads it.</summary>
        private bool Counts(out int min, out int max)
        {
            (min, max) = (0, 0);
            var close = p.IndexOf('}', _at);
            if (close < 0) return false;
            var inner = p[(_at + 1)..close];
            // ECMA-262: {n}, {n,}, {n,m}; Python (guided_regex) also {,m} and {,}.
            if (inner.Length == 0 || !CountForm().IsMatch(inner) || (inner.StartsWith(',') && !python)) return false;
            var parts = inner.Split(',');
            if (parts[0].Length > 4 || (parts.Length > 1 && parts[1].Length > 4))
                throw new ArgumentException($"the pattern's repetition {{{inner}}} is above {MaxCount}");
            min = parts[0].Length == 0 ? 0 : int.Parse(parts[0], CultureInfo.InvariantCulture);
            max = parts.Length == 1 ? min : parts[1].Length == 0 ? -1 : int.Parse(parts[1], CultureInfo.InvariantCulture);
            if (min > MaxCount || max > MaxCount || (max >= 0 && max < min)) throw new ArgumentException($"the pattern's repetition {{{inner}}} is out of order or above {MaxCount}");
            _at = close + 1;
            return true;
        }

        private Fragment Atom(int end)
        {
            var c = p[_at];
            switch (c)
            {
                case '(':
                    _at++;
                    if (p.AsSpan(_at).StartsWith("?:")) _at += 2;
                    else if (p.AsSpan(_at).StartsWith("?<") && _at + 2 < p.Length && p[_at + 2] is not ('=' or '!'))
                    {
                        var close = p.IndexOf('>', _at);
                        if (close < 0 || !GroupName().IsMatch(p[(_at + 2)..close])) throw Unsupported("group name (letters, digits, '_' or '$', not starting with a digit)");
                        _at = close + 1;
                    }
                    else if (_at < p.Length && p[_at] == '?') throw Unsupported($"lookaround or group flag at {_at - 1}");
                    var inner = Alternation(end);
                    if (_at >= end || p[_at] != ')') throw new ArgumentException("the pattern has an unclosed group");
                    _at++;
                    return inner;
                case '[':
                    return Ranges(Class());
                case '.':
                    _at++;
                    return Ranges([(0, 9), (11, 12), (14, 0x2027), (0x202A, 0xD7FF), (0xE000, 0xFFFF)]);
                case '\\':
                    return Ranges(Escape(inClass: false));
                case '^' or '$':
                    throw Unsupported($"anchor '{c}' inside the pattern (at {_at})");
                case ')' or '*' or '+' or '?' or ']' or '|':
                    throw Unsupported($"'{c}' at {_at}");
                case '{' when Counts(out _, out _):
                    throw Unsupported($"quantifier without an atom at {_at}");
                case '{' when python:
                    throw Unsupported($"literal '{{' at {_at} (escape it)");
                default:
                    _at++;
                    if (char.IsSurrogate(c)) throw Unsupported("character beyond U+FFFF");
                    return Ranges([(c, c)]);
            }
        }

        private Fragment Ranges(List<(int Lo, int Hi)> ranges) => () =>
        {
            var (s, e) = (b.State(), b.State());
            foreach (var (lo, hi) in ranges) b.Edge(s, lo, hi, e);
            return (s, e);
        };

        private List<(int, int)> Class()
        {
            _at++; // '['
            var negated = _at < p.Length && p[_at] == '^';
            if (negated) _at++;
            var ranges = new List<(int Lo, int Hi)>();
            while (true)
            {
                if (_at >= p.Length) throw new ArgumentException("the pattern has an unclosed class");
                if (p[_at] == ']') break;
                var lo = ClassAtom(negated);
                if (_at + 1 < p.Length && p[_at] == '-' && p[_at + 1] != ']')
                {
                    _at++;
                    var hi = ClassAtom(negated);
                    if (lo.Count != 1 || hi.Count != 1 || lo[0].Lo != lo[0].Hi || hi[0].Lo != hi[0].Hi || hi[0].Lo < lo[0].Lo)
                        throw new ArgumentException("the pattern has a class range out of order");
                    ranges.Add((lo[0].Lo, hi[0].Lo));
                }
                else ranges.AddRange(lo);
            }
            _at++; // ']'
            if (ranges.Count == 0) throw Unsupported("empty class");
            if (ranges.Any(r => r.Lo <= 0xDFFF && r.Hi >= 0xD800)) throw Unsupported("surrogate in a class");
            if (!negated) return ranges;
            // The complement over all code units but the surrogates (which only pairs, outside this subset, can write).
            var result = new List<(int, int)>();
            var next = 0;
            foreach (var (lo, hi) in ranges.Concat([(0xD800, 0xDFFF)]).OrderBy(r => r.Item1))
            {
                if (lo > next) result.Add((next, lo - 1));
                next = Math.Max(next, hi + 1);
            }
            if (next <= 0xFFFF) result.Add((next, 0xFFFF));
            return result;
        }

        private List<(int Lo, int Hi)> ClassAtom(bool negated)
        {
            if (p[_at] != '\\')
            {
                var c = p[_at++];
                if (char.IsSurrogate(c)) throw Unsupported("character beyond U+FFFF");
                return [(c, c)];
            }
            // In a negated class, \d \w \s would take in what .NET's Unicode classes leave out.
            if (negated && _at + 1 < p.Length && p[_at + 1] is 'd' or 'w' or 's') throw Unsupported($"'\\{p[_at + 1]}' in a negated class");
            return Escape(inClass: true);
        }

        private List<(int, int)> Escape(bool inClass)
        {
            _at++; // '\'
            if (_at >= p.Length) throw new ArgumentException("the pattern ends with a backslash");
            var c = p[_at++];
            switch (c)
            {
                case 'd': return [('0', '9')];
                case 'w': return [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
                case 's': return [('\t', '\r'), (' ', ' ')];
                case 't': return [('\t', '\t')];
                case 'n': return [('\n', '\n')];
                case 'r': return [('\r', '\r')];
                case 'f': return [('\f', '\f')];
                case 'v': return [('\v', '\v')];
                case 'b' when inClass: return [('\b', '\b')];
                case '0' when _at >= p.Length || !char.IsAsciiDigit(p[_at]): return [(0, 0)];
                case 'x' or 'u':
                    var digits = c == 'x' ? 2 : 4;
                    if (_at + digits > p.Length || !int.TryParse(p.AsSpan(_at, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v))
                        throw Unsupported($"'\\{c}' escape without {digits} hex digits");
                    _at += digits;
                    if (v is >= 0xD800 and <= 0xDFFF) throw Unsupported("surrogate escape");
                    return [(v, v)];
                case 'D' or 'W' or 'S':
                    throw Unsupported($"'\\{c}' (its Unicode reading differs between regex engines)");
                case 'b' or 'B':
                    throw Unsupported("word boundary");
                case >= '1' and <= '9':
                    throw Unsupported("backreference");
                case 'k' or 'p' or 'P' or 'c':
                    throw Unsupported($"'\\{c}' escape");
            }
            // Escaped punctuation is itself; .NET refuses escaped word characters and others it does not know.
            if (c >= 0x80 || char.IsAsciiLetterOrDigit(c) || c == '_') throw Unsupported($"'\\{c}' escape");
            return [(c, c)];
        }
    }
}
