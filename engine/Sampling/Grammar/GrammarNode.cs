using System.Text;

namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// A piece of a structured-output language: JSON values described by a schema (<see cref="JsonSchemaCompiler"/>),
/// and the literals, sequences, repetitions and alternatives that wrap them (a tool call's markers around its
/// arguments). Every node reads at least one byte. Each node has a process-wide id that names it in token-mask cache
/// keys, so a node (and the grammar compiled from the same schema text) reuses its masks across requests.
/// </summary>
public abstract class GrammarNode
{
    private static long _next;

    internal long Id { get; } = Interlocked.Increment(ref _next);
}

/// <summary>Exactly these bytes.</summary>
public sealed class LiteralNode : GrammarNode
{
    public LiteralNode(string text)
    {
        Bytes = Encoding.UTF8.GetBytes(text);
        if (Bytes.Length == 0) throw new ArgumentException("a literal needs at least one byte");
    }

    internal byte[] Bytes { get; }
}

/// <summary>The items one after the other.</summary>
public sealed class SequenceNode(params GrammarNode[] items) : GrammarNode
{
    internal GrammarNode[] Items { get; } = items.Length > 0 ? items : throw new ArgumentException("a sequence needs an item");
}

/// <summary>The item <see cref="Min"/> to <see cref="Max"/> times.</summary>
public sealed class RepeatNode(GrammarNode item, int min, int max) : GrammarNode
{
    internal GrammarNode Item { get; } = item;
    internal int Min { get; } = min >= 0 && max >= Math.Max(min, 1) ? min : throw new ArgumentException("0 <= min <= max, max >= 1");
    internal int Max { get; } = max;
}

/// <summary>Any one of the options (JSON Schema's anyOf; a list of types).</summary>
public sealed class AnyOfNode(params GrammarNode[] options) : GrammarNode
{
    internal GrammarNode[] Options { get; } = options.Length > 0 ? options : throw new ArgumentException("anyOf needs an option");
}

/// <summary>
/// A JSON object: declared properties (each at most once, in any order; the required ones before it closes) and,
/// where <see cref="Additional"/> is set, other keys with values of that schema. Keys of declared properties are
/// written as plain text (no escapes), so that a key cannot spell a declared name another way.
/// </summary>
public sealed class ObjectNode : GrammarNode
{
    public const int MaxProperties = 64;

    public ObjectNode(IReadOnlyList<(string Name, GrammarNode Value)> properties, IReadOnlyCollection<string> required, GrammarNode? additional)
    {
        if (properties.Count > MaxProperties) throw new ArgumentException($"at most {MaxProperties} properties per object");
        Names = properties.Select(p => Encoding.UTF8.GetBytes(p.Name)).ToArray();
        Values = properties.Select(p => p.Value).ToArray();
        for (var i = 0; i < properties.Count; i++)
        {
            if (properties[i].Name.Any(c => c is '"' or '\\' || char.IsControl(c))) throw new ArgumentException($"property name '{properties[i].Name}' has a quote, backslash or control character");
            if (required.Contains(properties[i].Name)) Required |= 1UL << i;
        }
        if (properties.Select(p => p.Name).Distinct().Count() != properties.Count) throw new ArgumentException("a property is declared twice");
        if (required.FirstOrDefault(r => !properties.Any(p => p.Name == r)) is { } missing) throw new ArgumentException($"required property '{missing}' is not in 'properties'");
        Additional = additional;
    }

    internal byte[][] Names { get; }
    internal GrammarNode[] Values { get; }
    internal ulong Required { get; }
    internal GrammarNode? Additional { get; }
    internal ulong All => Names.Length == 64 ? ulong.MaxValue : (1UL << Names.Length) - 1;
}

/// <summary>A JSON array of <see cref="Min"/> to <see cref="Max"/> items of one schema.</summary>
public sealed class ArrayNode(GrammarNode items, int min, int max) : GrammarNode
{
    internal GrammarNode Items { get; } = items;
    internal int Min { get; } = min >= 0 && max >= min ? min : throw new ArgumentException("0 <= minItems <= maxItems");
    internal int Max { get; } = max;
}

/// <summary>Any JSON string.</summary>
public sealed class StringNode : GrammarNode
{
    public static readonly StringNode Instance = new();

    private StringNode()
    {
    }
}

/// <summary>
/// A JSON string whose text matches a <see cref="Grammar.Pattern"/> (JSON Schema's "pattern"). Its characters stay in
/// the Basic Multilingual Plane: the pattern sees UTF-16 code units, and a character past U+FFFF would be two.
/// </summary>
public sealed class PatternNode(Pattern pattern) : GrammarNode
{
    internal Pattern Pattern { get; } = pattern;
}

/// <summary>A JSON number, or an integer (no fraction, no exponent).</summary>
public sealed class NumberNode : GrammarNode
{
    public static readonly NumberNode Any = new(false), Integer = new(true);

    private NumberNode(bool integer) => IsInteger = integer;

    internal bool IsInteger { get; }
}

/// <summary>One of a list of JSON values written compactly (enum, const, booleans, null).</summary>
public sealed class ConstNode : GrammarNode
{
    public static readonly ConstNode Boolean = new(["true", "false"]), Null = new(["null"]);

    public ConstNode(IReadOnlyList<string> compactJson)
    {
        Values = compactJson.Distinct().Select(Encoding.UTF8.GetBytes).ToArray();
        if (Values.Length == 0 || Values.Any(v => v.Length == 0)) throw new ArgumentException("an enum needs at least one value");
    }

    internal byte[][] Values { get; }
}

/// <summary>Any JSON value, nested at most <see cref="SchemaGrammar.MaxAnyDepth"/> deep.</summary>
public sealed class AnyValueNode : GrammarNode
{
    public static readonly AnyValueNode Instance = new();

    /// <summary>Any JSON object (its keys any strings, its values any values).</summary>
    public static readonly ObjectNode Object = new([], [], Instance);

    internal static readonly ArrayNode Array = new(Instance, 0, int.MaxValue);

    private AnyValueNode()
    {
    }
}
