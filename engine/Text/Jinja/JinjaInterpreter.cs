namespace MoeMesh.Engine.Text.Jinja;

/// <summary>
/// Renders parsed templates. Bounded: a template that loops, recurses or prints past the limits fails with a
/// <see cref="JinjaException"/> instead of taking the server's time or memory.
/// </summary>
internal sealed partial class JinjaInterpreter
{
    public const long MaxSteps = 5_000_000;
    public const int MaxOutputChars = 16 << 20;

    /// <summary>Characters of strings a render may build in all (concatenation copies its operands: a budget on that work).</summary>
    public const long MaxStringWork = 256L << 20;
    private const int MaxCallDepth = 100;

    private long _steps;
    private int _depth;
    private int _loops;

    public JinjaString Render(List<Node> nodes, JinjaScope scope)
    {
        var output = new JinjaString.Builder();
        try
        {
            Execute(nodes, scope, output);
        }
        catch (LoopSignal) when (_loops == 0)
        {
            throw new JinjaException("break or continue outside a loop");
        }
        return output.ToJinjaString();
    }

    private long _stringWork;

    private void Step()
    {
        if (++_steps > MaxSteps) throw new JinjaException($"the template took more than {MaxSteps:N0} steps");
    }

    /// <summary>Counts a string the template built against <see cref="MaxStringWork"/>.</summary>
    private object? Charge(object? value)
    {
        if (value is JinjaString s)
        {
            if (s.Text.Length > MaxOutputChars) throw new JinjaException($"a string the template built passed {MaxOutputChars:N0} characters");
            if ((_stringWork += s.Text.Length) > MaxStringWork)
                throw new JinjaException($"the template built more than {MaxStringWork:N0} characters of strings");
        }
        return value;
    }

    private void Execute(List<Node> nodes, JinjaScope scope, JinjaString.Builder output)
    {
        foreach (var node in nodes)
        {
            Step();
            switch (node)
            {
                case TextNode t:
                    Write(output, JinjaString.Template(t.Text));
                    break;
                case OutputNode o:
                    Write(output, JinjaValues.Str(Evaluate(o.Value, scope)));
                    break;
                case IfNode i:
                    Execute(JinjaValues.Truthy(Evaluate(i.Test, scope)) ? i.Body : i.Else, scope, output);
                    break;
                case ForNode f:
                    For(f, scope, output);
                    break;
                case SetNode s:
                    Assign(s.Target, s.Value is not null ? Evaluate(s.Value, scope) : Render(s.Body!, scope), scope);
                    break;
                case MacroNode m:
                    scope.Set(m.Name, Macro(m, scope));
                    break;
                case FilterBlockNode fb:
                    Write(output, JinjaValues.Str(ApplyFilter(fb.Filter, Render(fb.Body, scope), scope)));
                    break;
                case BreakNode:
                    throw new LoopSignal(isBreak: true);
                case ContinueNode:
                    throw new LoopSignal(isBreak: false);
                default:
                    throw new JinjaException($"cannot execute {node.GetType().Name}");
            }
        }
    }

    private static void Write(JinjaString.Builder output, JinjaString s)
    {
        if (output.Length + s.Text.Length > MaxOutputChars)
            throw new JinjaException($"the template's output passed {MaxOutputChars:N0} characters");
        output.Append(s);
    }

    private void For(ForNode f, JinjaScope scope, JinjaString.Builder output)
    {
        var items = new List<object?>();
        foreach (var item in Iterate(Evaluate(f.Iterable, scope)))
        {
            Step();
            if (f.Filter is not null)
            {
                var test = new JinjaScope(scope);
                Assign(f.Target, item, test);
                if (!JinjaValues.Truthy(Evaluate(f.Filter, test))) continue;
            }
            items.Add(item);
        }
        if (items.Count == 0)
        {
            Execute(f.Else, scope, output);
            return;
        }
        for (var i = 0; i < items.Count; i++)
        {
            // As in Python's Jinja, each iteration starts from the enclosing scope: what the body sets does not carry
            // over to the next iteration (a namespace does).
            var loopScope = new JinjaScope(scope);
            loopScope.Set("loop", LoopVariable(items, i));
            Assign(f.Target, items[i], loopScope);
            _loops++;
            try
            {
                Execute(f.Body, loopScope, output);
            }
            catch (LoopSignal signal)
            {
                if (signal.IsBreak) break;
            }
            finally
            {
                _loops--;
            }
        }
    }

    private static OrderedDictionary<string, object?> LoopVariable(List<object?> items, int i) => new(StringComparer.Ordinal)
    {
        ["index"] = (long)(i + 1),
        ["index0"] = (long)i,
        ["revindex"] = (long)(items.Count - i),
        ["revindex0"] = (long)(items.Count - i - 1),
        ["first"] = i == 0,
        ["last"] = i == items.Count - 1,
        ["length"] = (long)items.Count,
        ["previtem"] = i > 0 ? items[i - 1] : JinjaUndefined.Value,
        ["nextitem"] = i < items.Count - 1 ? items[i + 1] : JinjaUndefined.Value,
    };

    /// <summary>What a for loop walks: a list's items, a dict's keys, a string's characters; nothing for undefined.</summary>
    internal static IEnumerable<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list.ToList(),
        OrderedDictionary<string, object?> dict => dict.Keys.Select(k => (object?)JinjaValues.KeyString(dict, k)).ToList(),
        JinjaString s => Enumerable.Range(0, s.Text.Length).Select(i => (object?)s.Substring(i, 1)).ToList(),
        JinjaUndefined => [],
        _ => throw new JinjaException($"{JinjaValues.TypeName(value)} is not iterable"),
    };

    private void Assign(Expr target, object? value, JinjaScope scope)
    {
        switch (target)
        {
            case NameExpr n:
                scope.Set(n.Name, value);
                break;
            case AttributeExpr { Target: var owner } a:
                if (Evaluate(owner, scope) is not JinjaNamespace ns)
                    throw new JinjaException($"cannot set '{a.Name}': only a namespace's attributes can be set", a.Position);
                ns.Values[a.Name] = value;
                break;
            case ListExpr { IsTuple: true } tuple:
                var values = value as List<object?> ?? throw new JinjaException($"cannot unpack {JinjaValues.TypeName(value)}", tuple.Position);
                if (values.Count != tuple.Items.Count)
                    throw new JinjaException($"expected {tuple.Items.Count} values to unpack, got {values.Count}", tuple.Position);
                for (var i = 0; i < values.Count; i++) Assign(tuple.Items[i], values[i], scope);
                break;
            default:
                throw new JinjaException("cannot assign to this expression", target.Position);
        }
    }

    private JinjaFunction Macro(MacroNode m, JinjaScope definedIn) => (args, kwargs) =>
    {
        if (args.Count > m.Parameters.Count)
            throw new JinjaException($"macro '{m.Name}' takes {m.Parameters.Count} arguments, got {args.Count}");
        if (++_depth > MaxCallDepth) throw new JinjaException($"macros nested deeper than {MaxCallDepth}");
        try
        {
            var scope = new JinjaScope(definedIn);
            for (var i = 0; i < m.Parameters.Count; i++)
            {
                var (name, defaultValue) = m.Parameters[i];
                scope.Set(name, i < args.Count ? args[i]
                    : kwargs.TryGetValue(name, out var v) ? v
                    : defaultValue is not null ? Evaluate(defaultValue, scope)
                    : JinjaUndefined.Value);
            }
            return Render(m.Body, scope);
        }
        finally
        {
            _depth--;
        }
    };

    private sealed class LoopSignal(bool isBreak) : Exception
    {
        public bool IsBreak { get; } = isBreak;
    }
}
