using System.Text;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// The language of a <see cref="GrammarNode"/> tree (a JSON schema, a tool call), read byte by byte as a set of
/// alternative parse stacks: alternatives (anyOf, an enum value that may continue or end) are followed side by side
/// and dropped as bytes rule them out, so that no choice is ever made early and no state that can still complete is
/// a dead end. Whitespace runs between JSON tokens are at most <see cref="JsonObjectGrammar.MaxWhitespace"/> bytes and
/// numbers at most <see cref="JsonObjectGrammar.MaxNumberLength"/>; the root must end by itself (an object, an array,
/// a string, a literal), starts the output (no whitespace before it) and ends it.
/// </summary>
public sealed class SchemaGrammar : OutputGrammar
{
    /// <summary>Frames deep past which values of any type (schema {}) no longer open objects or arrays.</summary>
    public const int MaxAnyDepth = 24;

    private readonly GrammarNode _root;

    public SchemaGrammar(GrammarNode root)
    {
        if (!EndsByItself(root)) throw new ArgumentException("the root must be an object, an array or a string (a number's end is never known)");
        _root = root;
    }

    private static bool EndsByItself(GrammarNode node) => node switch
    {
        ObjectNode or ArrayNode or StringNode or PatternNode or LiteralNode => true,
        AnyOfNode a => a.Options.All(EndsByItself),
        SequenceNode s => EndsByItself(s.Items[^1]),
        RepeatNode r => EndsByItself(r.Item),
        _ => false,
    };

    public override GrammarState Start()
    {
        // No whitespace before the root value (as for json_object): the output starts with the value.
        var into = new List<Stack?>();
        Stack.Push(_root, null, into, leadingSpace: false);
        return new SchemaState([.. into]);
    }
}

/// <summary>A position in a <see cref="SchemaGrammar"/>: the parse stacks still alive (null: the output is complete).</summary>
internal sealed class SchemaState(Stack?[] alternatives) : GrammarState
{
    private static readonly byte[] Quote = [(byte)'"'];
    private string? _key;

    public override GrammarState? Advance(byte b)
    {
        var into = new List<Stack?>(alternatives.Length);
        foreach (var s in alternatives) s?.Top.Step(b, s.Below, into);
        if (into.Count == 0) return null;
        if (into.Count == 1) return new SchemaState([into[0]]);
        // Alternatives that reached the same stack are one.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        return new SchemaState(into.Where(s => seen.Add(s?.Key ?? "")).ToArray());
    }

    public override bool IsComplete => alternatives.Any(a => a is null);

    public override string Key => _key ??= "schema|" + string.Join('|', alternatives.Select(a => a?.Key ?? "end").Order(StringComparer.Ordinal));

    /// <summary>Inside a string whose bytes are free (any string value, or a key that can only be an undeclared one): JSON's string region.</summary>
    public override string? RegionKey
    {
        get
        {
            string? region = null;
            foreach (var a in alternatives)
            {
                if (a?.Top.RegionKey is not { } r || (region is not null && region != r)) return null;
                region = r;
            }
            return region;
        }
    }

    public override byte[] RegionExits => Quote;
}

/// <summary>An immutable stack of frames, the innermost on top.</summary>
internal sealed class Stack(Frame top, Stack? below)
{
    private string? _key;

    public Frame Top { get; } = top;
    public Stack? Below { get; } = below;
    public int Depth { get; } = (below?.Depth ?? 0) + 1;
    public string Key => _key ??= Below is null ? Top.Key : Top.Key + "/" + Below.Key;

    /// <summary>Adds the stacks that wait for the first byte of <paramref name="node"/> on top of <paramref name="rest"/>.</summary>
    public static void Push(GrammarNode node, Stack? rest, List<Stack?> into, bool leadingSpace = true)
    {
        switch (node)
        {
            case AnyOfNode a:
                foreach (var o in a.Options) Push(o, rest, into, leadingSpace);
                break;
            case SequenceNode s:
                into.Add(new Stack(new SequenceFrame(s, 0), rest));
                break;
            case RepeatNode r:
                into.Add(new Stack(new RepeatFrame(r, 0), rest));
                break;
            case LiteralNode l:
                into.Add(new Stack(new LiteralFrame(l, 0), rest));
                break;
            default:
                into.Add(new Stack(new ValueFrame(node, leadingSpace ? 0 : JsonObjectGrammar.MaxWhitespace), rest));
                break;
        }
    }

    /// <summary>Reads <paramref name="b"/> as the first byte of <paramref name="node"/>.</summary>
    public static void StepInto(GrammarNode node, Stack? rest, byte b, List<Stack?> into)
    {
        var waiting = new List<Stack?>();
        Push(node, rest, waiting);
        foreach (var s in waiting) s!.Top.Step(b, s.Below, into);
    }

    /// <summary>Reads <paramref name="b"/> after the frame that just ended, into what was below it.</summary>
    public static void Feed(byte b, Stack? rest, List<Stack?> into) => rest?.Top.Step(b, rest.Below, into);
}

/// <summary>One level of a parse: what it has read and what it accepts next.</summary>
internal abstract class Frame
{
    /// <summary>Adds the stacks after <paramref name="b"/>; <paramref name="rest"/> is what lies below this frame.</summary>
    public abstract void Step(byte b, Stack? rest, List<Stack?> into);

    public abstract string Key { get; }

    public virtual string? RegionKey => null;
}

internal sealed class LiteralFrame(LiteralNode node, int at) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        if (node.Bytes[at] != b) return;
        into.Add(at + 1 == node.Bytes.Length ? rest : new Stack(new LiteralFrame(node, at + 1), rest));
    }

    public override string Key => $"l{node.Id}.{at}";
}

internal sealed class SequenceFrame(SequenceNode node, int next) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into) =>
        Stack.StepInto(node.Items[next], next + 1 == node.Items.Length ? rest : new Stack(new SequenceFrame(node, next + 1), rest), b, into);

    public override string Key => $"q{node.Id}.{next}";
}

internal sealed class RepeatFrame(RepeatNode node, int count) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        if (count < node.Max) Stack.StepInto(node.Item, new Stack(new RepeatFrame(node, count + 1), rest), b, into);
        if (count >= node.Min) Stack.Feed(b, rest, into);
    }

    public override string Key => $"r{node.Id}.{count}";
}

/// <summary>Before a value: whitespace, then the byte that opens it.</summary>
internal sealed class ValueFrame(GrammarNode node, int ws) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        if (JsonSyntax.IsSpace(b))
        {
            if (ws < JsonObjectGrammar.MaxWhitespace) into.Add(new Stack(new ValueFrame(node, ws + 1), rest));
            return;
        }
        Open(node, b, rest, into);
    }

    /// <summary>Reads the first byte of a value of <paramref name="node"/>.</summary>
    public static void Open(GrammarNode node, byte b, Stack? rest, List<Stack?> into)
    {
        switch (node)
        {
            case ObjectNode o when b == '{':
                into.Add(new Stack(new ObjectFrame(o, 0, ObjectFrame.Phase.Open, -1, 0), rest));
                break;
            case ArrayNode a when b == '[':
                into.Add(new Stack(new ArrayFrame(a, 0, open: true, 0), rest));
                break;
            case StringNode when b == '"':
                into.Add(new Stack(new StringFrame(0, 0), rest));
                break;
            case PatternNode pn when b == '"':
                into.Add(new Stack(new PatternFrame(pn, pn.Pattern.Initial, 0, 0, 0, 0), rest));
                break;
            case NumberNode n when JsonSyntax.NumberStart(b) is > 0 and var phase:
                into.Add(new Stack(new NumberFrame(n.IsInteger, phase, 1), rest));
                break;
            case ConstNode c:
                new ConstFrame(c, 0, Enumerable.Range(0, c.Values.Length).ToArray()).Step(b, rest, into);
                break;
            case AnyValueNode:
                // Containers only while the stack is shallow enough; a scalar is always possible.
                if ((rest?.Depth ?? 0) < SchemaGrammar.MaxAnyDepth || b is not ((byte)'{' or (byte)'['))
                    foreach (var kind in (GrammarNode[])[AnyValueNode.Object, AnyValueNode.Array, StringNode.Instance, NumberNode.Any, ConstNode.Boolean, ConstNode.Null])
                        Open(kind, b, rest, into);
                break;
        }
    }

    public override string Key => $"v{node.Id}.{ws}";
}

/// <summary>Inside an object: which declared properties it has, and where between keys and values it is.</summary>
internal sealed class ObjectFrame(ObjectNode node, ulong seen, ObjectFrame.Phase phase, int pending, int ws) : Frame
{
    public enum Phase : byte
    {
        Open,       // after '{': a key or '}'
        KeyNext,    // after ',': a key
        Colon,      // after a key (pending: its property, -1 for another key): ':'
        AfterValue, // ',' or '}'
    }

    private bool KeysLeft => (seen & node.All) != node.All || node.Additional is not null;

    private bool MayClose => (node.Required & ~seen) == 0;

    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        if (JsonSyntax.IsSpace(b))
        {
            if (ws < JsonObjectGrammar.MaxWhitespace) into.Add(new Stack(new ObjectFrame(node, seen, phase, pending, ws + 1), rest));
            return;
        }
        switch (phase)
        {
            case Phase.Open or Phase.KeyNext when b == '"' && KeysLeft:
                // Where other keys are allowed every declared name is followed (to refuse a repeat); otherwise the unseen ones.
                var alive = node.Additional is null ? node.All & ~seen : node.All;
                into.Add(new Stack(new KeyFrame(node, alive, 0, node.Additional is not null, 0, 0), new Stack(new ObjectFrame(node, seen, Phase.KeyNext, -1, 0), rest)));
                break;
            case Phase.Open or Phase.AfterValue when b == '}' && MayClose:
                into.Add(rest);
                break;
            case Phase.Colon when b == ':':
                Stack.Push(pending >= 0 ? node.Values[pending] : node.Additional!, new Stack(new ObjectFrame(node, seen, Phase.AfterValue, -1, 0), rest), into);
                break;
            case Phase.AfterValue when b == ',' && KeysLeft:
                into.Add(new Stack(new ObjectFrame(node, seen, Phase.KeyNext, -1, 0), rest));
                break;
        }
    }

    /// <summary>The object after a key: its property (or -1 for another key) is next, after the colon.</summary>
    public ObjectFrame KeyRead(int property) =>
        new(node, property >= 0 ? seen | (1UL << property) : seen, Phase.Colon, property, 0);

    public ulong Seen => seen;

    public override string Key => $"o{node.Id}.{seen:x}.{(byte)phase}.{pending}.{ws}";
}

/// <summary>
/// A key being read: the declared names it may still be (<c>alive</c>, a bit per property) and, where other keys are
/// allowed, its progress as a free string (plain text where the object declares properties; any string otherwise).
/// </summary>
internal sealed class KeyFrame(ObjectNode node, ulong alive, int at, bool free, int sub, int count) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        var obj = (ObjectFrame)rest!.Top;
        if (b == '"' && sub == 0 && count == 0)
        {
            var exact = -1;
            for (var i = 0; i < node.Names.Length; i++)
                if ((alive & (1UL << i)) != 0 && node.Names[i].Length == at) exact = i;
            if (exact >= 0 && (obj.Seen & (1UL << exact)) == 0) into.Add(new Stack(obj.KeyRead(exact), rest.Below));
            else if (exact < 0 && free) into.Add(new Stack(obj.KeyRead(-1), rest.Below));
            return;
        }
        var next = 0UL;
        for (var i = 0; i < node.Names.Length; i++)
            if ((alive & (1UL << i)) != 0 && node.Names[i].Length > at && node.Names[i][at] == b) next |= 1UL << i;
        var (s, c) = (sub, count);
        var stillFree = free && JsonSyntax.StringStep(ref s, ref c, b, escapes: node.Names.Length == 0, out _);
        if (next != 0 || stillFree) into.Add(new Stack(new KeyFrame(node, next, next != 0 ? at + 1 : 0, stillFree, s, c), rest));
    }

    public override string Key => $"k{node.Id}.{alive:x}.{at}.{(free ? 1 : 0)}.{sub}.{count}";

    /// <summary>A key that can only be an undeclared one is a free string: JSON's string region (plain text when the object declares names).</summary>
    public override string? RegionKey => alive == 0 && free ? (node.Names.Length == 0 ? $"json-string|{sub}|{count}" : $"json-plain-string|{sub}|{count}") : null;
}

internal sealed class ArrayFrame(ArrayNode node, int count, bool open, int ws) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        if (JsonSyntax.IsSpace(b))
        {
            if (ws < JsonObjectGrammar.MaxWhitespace) into.Add(new Stack(new ArrayFrame(node, count, open, ws + 1), rest));
            return;
        }
        if (b == ']' && count >= node.Min) into.Add(rest);
        else if (open && node.Max > 0) Stack.StepInto(node.Items, new Stack(After(1), rest), b, into);
        else if (!open && b == ',' && count < node.Max) Stack.Push(node.Items, new Stack(After(count + 1), rest), into);
    }

    // Without an upper bound, counts past the lower one are all alike: the key stops counting there.
    private ArrayFrame After(int items) => new(node, node.Max == int.MaxValue ? Math.Min(items, node.Min) : items, open: false, 0);

    // States whose counts are as far from both bounds as one token can reach (a few hundred items at the most) accept
    // the same tokens: the key clips the distances there, so that long arrays do not make a mask per item.
    public override string Key => $"a{node.Id}.{Math.Min(Math.Max(node.Min - count, 0), 512)}.{Math.Min((long)node.Max - count, 512)}.{(open ? 1 : 0)}.{ws}";
}

internal sealed class StringFrame(int sub, int count) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        var (s, c) = (sub, count);
        if (!JsonSyntax.StringStep(ref s, ref c, b, escapes: true, out var closed)) return;
        into.Add(closed ? rest : new Stack(new StringFrame(s, c), rest));
    }

    public override string Key => $"s{sub}.{count}";

    public override string? RegionKey => $"json-string|{sub}|{count}";
}

internal sealed class NumberFrame(bool integer, int phase, int length) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        var next = JsonSyntax.NumberStep(phase, length, b, integer, JsonObjectGrammar.MaxNumberLength);
        if (next > 0) into.Add(new Stack(new NumberFrame(integer, next, length + 1), rest));
        else if (next == 0) Stack.Feed(b, rest, into);
    }

    public override string Key => $"n{(integer ? 1 : 0)}.{phase}.{length}";
}

/// <summary>Part of an enum value: the values it may still be. A complete value that another could extend ends with the next byte that does not.</summary>
internal sealed class ConstFrame(ConstNode node, int at, int[] alive) : Frame
{
    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        var next = alive.Where(i => node.Values[i].Length > at && node.Values[i][at] == b).ToArray();
        if (next.Length > 0)
            into.Add(next.All(i => node.Values[i].Length == at + 1) ? rest : new Stack(new ConstFrame(node, at + 1, next), rest));
        if (at > 0 && alive.Any(i => node.Values[i].Length == at)) Stack.Feed(b, rest, into);
    }

    public override string Key => $"c{node.Id}.{at}.{string.Join(',', alive)}";
}

/// <summary>
/// A string under a pattern: the pattern's DFA state after the units read, and where the current character stands
/// (UTF-8 continuation bytes or escape digits still due, and their value so far). A byte is taken only where some
/// character it can begin still leads towards a match, so the string can always be finished. Once a pattern not
/// anchored at the end has matched, the rest of the string is free: a plain string frame takes over.
/// </summary>
internal sealed class PatternFrame(PatternNode node, int state, int sub, int count, int value, int length) : Frame
{
    private static readonly int[] Escaped = ['"', '\\', '/', '\b', '\f', '\n', '\r', '\t'];

    public override void Step(byte b, Stack? rest, List<Stack?> into)
    {
        var pattern = node.Pattern;
        if (sub == 0 && count == 0 && b == '"')
        {
            if (pattern.Accepts(state)) into.Add(rest);
            return;
        }
        if (sub == 0 && count == 0 && b >= 0xF0) return; // past U+FFFF: two units to the pattern
        var (s, c) = (sub, count);
        if (!JsonSyntax.StringStep(ref s, ref c, b, escapes: true, out _)) return;
        var next = state;
        int v = value, len = length;
        if (count > 0) next = pattern.StepUtf8(state, b, lead: false, c, ref v, ref len);
        else if (sub == 1)
        {
            // After a backslash: an escape's character, or \u and its first digit.
            if (b == 'u') (v, len) = (0, 4);
            else next = pattern.Step(state, Escaped["\"\\/bfnrt".IndexOf((char)b)]);
        }
        else if (sub is >= 2 and <= 6)
        {
            // A digit of \uXXXX: the value so far, complete after the fourth.
            v = value * 16 + (b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10);
            var due = s == 0 ? 0 : s == 6 ? 3 : 5 - s + 1;
            if (due == 0) next = pattern.Step(state, v);
            else if (!pattern.CanStep(state, v << (4 * due), ((v + 1) << (4 * due)) - 1)) return;
        }
        else if (b == '\\')
        {
            // Some escape must still lead on: \uXXXX can write any unit.
            if (!pattern.CanStep(state, 0, 0xFFFF)) return;
        }
        else next = pattern.StepUtf8(state, b, lead: true, c, ref v, ref len);
        if (next < 0) return;
        var between = s == 0 && c == 0;
        into.Add(new Stack(between && pattern.Settled(next) ? new StringFrame(0, 0) : new PatternFrame(node, next, s, c, between ? 0 : v, between ? 0 : len), rest));
    }

    public override string Key => $"P{node.Id}.{state}.{sub}.{count}.{value}.{length}";
}
