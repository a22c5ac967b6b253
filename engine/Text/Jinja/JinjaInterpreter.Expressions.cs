namespace MoeMesh.Engine.Text.Jinja;

internal sealed partial class JinjaInterpreter
{
    public object? Evaluate(Expr expr, JinjaScope scope)
    {
        Step();
        switch (expr)
        {
            case LiteralExpr l:
                return l.Value;
            case NameExpr n:
                return scope.Lookup(n.Name);
            case ListExpr l:
                return l.Items.Select(i => Evaluate(i, scope)).ToList();
            case DictExpr d:
            {
                var dict = new OrderedDictionary<string, object?>(StringComparer.Ordinal);
                foreach (var (k, v) in d.Items)
                {
                    if (Evaluate(k, scope) is not JinjaString key) throw new JinjaException("dict keys must be strings", k.Position);
                    dict[key.Text] = Evaluate(v, scope);
                }
                return dict;
            }
            case AttributeExpr a:
                return JinjaMembers.Attribute(Evaluate(a.Target, scope), a.Name);
            case IndexExpr i:
                return JinjaMembers.Index(Evaluate(i.Target, scope), Evaluate(i.Key, scope), i.Position);
            case SliceExpr s:
                return Charge(JinjaMembers.Slice(Evaluate(s.Target, scope), Bound(s.Start), Bound(s.Stop), Bound(s.Step), s.Position));
            case CallExpr c:
                return Charge(Call(c, scope));
            case FilterExpr f:
                return Charge(ApplyFilter(f, Evaluate(f.Operand!, scope), scope));
            case TestExpr t:
                return Test(t, scope);
            case UnaryExpr u:
                return Unary(u, scope);
            case BinaryExpr b:
                return Charge(Binary(b, scope));
            case ConditionalExpr c:
                return JinjaValues.Truthy(Evaluate(c.Test, scope)) ? Evaluate(c.Then, scope)
                    : c.Else is not null ? Evaluate(c.Else, scope) : JinjaUndefined.Value;
            default:
                throw new JinjaException($"cannot evaluate {expr.GetType().Name}", expr.Position);
        }

        long? Bound(Expr? e) => e is null ? null : Evaluate(e, scope) switch
        {
            long l => l,
            null or JinjaUndefined => null,
            var v => throw new JinjaException($"slice bounds must be integers, got {JinjaValues.TypeName(v)}", e.Position),
        };
    }

    private object? Call(CallExpr c, JinjaScope scope)
    {
        var callee = Evaluate(c.Callee, scope);
        if (callee is not JinjaFunction f)
            throw new JinjaException($"{Describe(c.Callee)} is {JinjaValues.TypeName(callee)}, not something to call", c.Position);
        var args = c.Args.Select(a => Evaluate(a, scope)).ToList();
        var kwargs = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in c.Kwargs) kwargs[name] = Evaluate(value, scope);
        try
        {
            return f(args, kwargs);
        }
        catch (JinjaException e) when (e.Position < 0 && e is not RaisedException)
        {
            throw new JinjaException(e.Message, c.Position);
        }
    }

    private static string Describe(Expr e) => e switch
    {
        NameExpr n => $"'{n.Name}'",
        AttributeExpr a => $"'{a.Name}'",
        _ => "the value",
    };

    private object? ApplyFilter(FilterExpr f, object? operand, JinjaScope scope)
    {
        var args = f.Args.Select(a => Evaluate(a, scope)).ToList();
        var kwargs = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in f.Kwargs) kwargs[name] = Evaluate(value, scope);
        try
        {
            return JinjaFilters.Apply(f.Name, operand, args, kwargs);
        }
        catch (JinjaException e) when (e.Position < 0)
        {
            throw new JinjaException($"filter '{f.Name}': {e.Message}", f.Position);
        }
    }

    private bool Test(TestExpr t, JinjaScope scope)
    {
        var operand = Evaluate(t.Operand, scope);
        var args = t.Args.Select(a => Evaluate(a, scope)).ToList();
        return JinjaFilters.Test(t.Name, operand, args, t.Position) != t.Negated;
    }

    private object? Unary(UnaryExpr u, JinjaScope scope)
    {
        var v = Evaluate(u.Operand, scope);
        return u.Operator switch
        {
            "not" => !JinjaValues.Truthy(v),
            "-" => v switch
            {
                long l => (object)checked(-l),
                double d => -d,
                _ => throw new JinjaException($"cannot negate {JinjaValues.TypeName(v)}", u.Position),
            },
            _ => v is long or double ? v : throw new JinjaException($"unary + needs a number, got {JinjaValues.TypeName(v)}", u.Position),
        };
    }

    private object? Binary(BinaryExpr b, JinjaScope scope)
    {
        var left = Evaluate(b.Left, scope);
        switch (b.Operator)
        {
            case "and":
                return JinjaValues.Truthy(left) ? Evaluate(b.Right, scope) : left;
            case "or":
                return JinjaValues.Truthy(left) ? left : Evaluate(b.Right, scope);
        }
        var right = Evaluate(b.Right, scope);
        try
        {
            return JinjaOperators.Apply(b.Operator, left, right);
        }
        catch (JinjaException e) when (e.Position < 0)
        {
            throw new JinjaException(e.Message, b.Position);
        }
    }
}

/// <summary>The error raise_exception() throws: the template's own message, passed to the caller as it is.</summary>
internal sealed class RaisedException(string message) : JinjaException(message);
