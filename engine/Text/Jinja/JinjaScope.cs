namespace MoeMesh.Engine.Text.Jinja;

/// <summary>Variables visible at one point of a template: a loop or macro body sees its parent's, and sets its own.</summary>
internal sealed class JinjaScope(JinjaScope? parent)
{
    private readonly Dictionary<string, object?> _variables = new(StringComparer.Ordinal);

    public object? Lookup(string name)
    {
        for (var s = this; s is not null; s = s.Parent)
        {
            if (s._variables.TryGetValue(name, out var v)) return v;
        }
        return JinjaUndefined.Value;
    }

    public void Set(string name, object? value) => _variables[name] = value;

    public JinjaScope? Parent { get; } = parent;
}
