using System.Globalization;

namespace MoeMesh.Engine.Text.Jinja;

/// <summary>Expressions, by Jinja's precedence: conditional, or, and, not, comparisons, +/-, ~, */ // %, **, unary, postfix, filters and tests.</summary>
internal sealed partial class JinjaParser
{
    private static readonly HashSet<string> TestArgStoppers = ["and", "or", "if", "else", "in", "not", "is"];

    /// <summary>An expression, or several separated by commas (a tuple without parentheses).</summary>
    private Expr Tuple()
    {
        var position = Peek.Position;
        var first = Expression();
        if (!IsOperator(",")) return first;
        var items = new List<Expr> { first };
        while (IsOperator(","))
        {
            _at++;
            items.Add(Expression());
        }
        return new ListExpr(items, true, position);
    }

    public Expr Expression()
    {
        var value = Or();
        while (IsName("if"))
        {
            var position = Next().Position;
            var test = Or();
            Expr? orElse = null;
            if (IsName("else"))
            {
                _at++;
                orElse = Expression();
            }
            value = new ConditionalExpr(test, value, orElse, position);
        }
        return value;
    }

    private Expr Or() => LeftAssociative(And, "or");

    private Expr And() => LeftAssociative(Not, "and");

    private Expr Not()
    {
        if (!IsName("not")) return Compare();
        var position = Next().Position;
        return new UnaryExpr("not", Not(), position);
    }

    private Expr Compare()
    {
        var left = Math1();
        while (true)
        {
            var t = Peek;
            string op;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or "<=" or ">" or ">=") op = t.Value;
            else if (IsName("in")) op = "in";
            else if (IsName("not") && _tokens[_at + 1] is { Kind: TokenKind.Name, Value: "in" })
            {
                _at++;
                op = "not in";
            }
            else return left;
            _at++;
            left = new BinaryExpr(op, left, Math1(), t.Position);
        }
    }

    private Expr Math1() => LeftAssociative(Concat, "+", "-");

    private Expr Concat() => LeftAssociative(Math2, "~");

    private Expr Math2() => LeftAssociative(Power, "*", "/", "//", "%");

    private Expr Power() => LeftAssociative(() => Unary(true), "**");

    private Expr LeftAssociative(Func<Expr> operand, params string[] operators)
    {
        var left = operand();
        while (Peek.Kind is TokenKind.Operator or TokenKind.Name && operators.Contains(Peek.Value))
        {
            var t = Next();
            left = new BinaryExpr(t.Value, left, operand(), t.Position);
        }
        return left;
    }

    private Expr Unary(bool withFilters)
    {
        if (++_nesting > MaxNesting) throw new JinjaException($"expressions nested deeper than {MaxNesting}", Peek.Position);
        try
        {
            return UnaryAt(withFilters);
        }
        finally
        {
            _nesting--;
        }
    }

    private Expr UnaryAt(bool withFilters)
    {
        Expr value;
        if (IsOperator("-") || IsOperator("+"))
        {
            var t = Next();
            value = new UnaryExpr(t.Value, Unary(false), t.Position);
        }
        else value = Postfix(Primary());
        return withFilters ? FiltersAndTests(value) : value;
    }

    private Expr Primary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Position),
                    "false" or "False" => new LiteralExpr(false, t.Position),
                    "none" or "None" => new LiteralExpr(null, t.Position),
                    _ => new NameExpr(t.Value, t.Position),
                };
            case TokenKind.String:
            {
                var text = t.Value;
                while (Peek.Kind == TokenKind.String) text += Next().Value;
                return new LiteralExpr(JinjaString.Template(text), t.Position);
            }
            case TokenKind.Integer:
                return new LiteralExpr(long.Parse(t.Value, CultureInfo.InvariantCulture), t.Position);
            case TokenKind.Float:
                return new LiteralExpr(double.Parse(t.Value, CultureInfo.InvariantCulture), t.Position);
            case TokenKind.Operator when t.Value == "(":
            {
                if (IsOperator(")"))
                {
                    _at++;
                    return new ListExpr([], true, t.Position);
                }
                var inner = Tuple();
                ExpectOperator(")");
                return inner;
            }
            case TokenKind.Operator when t.Value == "[":
                return new ListExpr(Items("]", Expression), false, t.Position);
            case TokenKind.Operator when t.Value == "{":
                return new DictExpr(Items("}", () =>
                {
                    var key = Expression();
                    ExpectOperator(":");
                    return (key, Expression());
                }), t.Position);
            default:
                throw new JinjaException($"unexpected '{(t.Kind == TokenKind.End ? "end of template" : t.Value)}'", t.Position);
        }
    }

    private List<T> Items<T>(string close, Func<T> item)
    {
        var items = new List<T>();
        while (!IsOperator(close))
        {
            if (items.Count > 0)
            {
                ExpectOperator(",");
                if (IsOperator(close)) break;
            }
            items.Add(item());
        }
        _at++;
        return items;
    }

    private Expr Postfix(Expr value)
    {
        while (true)
        {
            if (IsOperator("."))
            {
                var t = Next();
                var name = Next();
                value = name.Kind switch
                {
                    TokenKind.Name => new AttributeExpr(value, name.Value, t.Position),
                    TokenKind.Integer => new IndexExpr(value, new LiteralExpr(long.Parse(name.Value, CultureInfo.InvariantCulture), name.Position), t.Position),
                    _ => throw new JinjaException("expected an attribute name after '.'", name.Position),
                };
            }
            else if (IsOperator("[")) value = Subscript(value);
            else if (IsOperator("(")) value = Call(value);
            else return value;
        }
    }

    private Expr Subscript(Expr target)
    {
        var position = Next().Position;
        var parts = new Expr?[3];
        var colons = 0;
        while (!IsOperator("]"))
        {
            if (IsOperator(":"))
            {
                if (++colons > 2) throw new JinjaException("a slice takes at most three parts", Peek.Position);
                _at++;
                continue;
            }
            if (parts[colons] is not null) throw new JinjaException("expected ':' or ']'", Peek.Position);
            parts[colons] = Expression();
        }
        _at++;
        if (colons == 0)
            return new IndexExpr(target, parts[0] ?? throw new JinjaException("an empty subscript", position), position);
        return new SliceExpr(target, parts[0], parts[1], parts[2], position);
    }

    private CallExpr Call(Expr callee)
    {
        var position = Peek.Position;
        var (args, kwargs) = Arguments();
        return new CallExpr(callee, args, kwargs, position);
    }

    private (List<Expr> Args, List<(string, Expr)> Kwargs) Arguments()
    {
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        ExpectOperator("(");
        while (!IsOperator(")"))
        {
            if (args.Count + kwargs.Count > 0) ExpectOperator(",");
            if (Peek.Kind == TokenKind.Name && _tokens[_at + 1] is { Kind: TokenKind.Operator, Value: "=" })
            {
                var name = Next().Value;
                _at++;
                kwargs.Add((name, Expression()));
            }
            else if (kwargs.Count > 0) throw new JinjaException("a positional argument follows a keyword argument", Peek.Position);
            else args.Add(Expression());
        }
        _at++;
        return (args, kwargs);
    }

    private Expr FiltersAndTests(Expr value)
    {
        while (true)
        {
            if (IsOperator("|"))
            {
                _at++;
                value = Filter(value);
            }
            else if (IsName("is"))
            {
                var position = Next().Position;
                var negated = IsName("not");
                if (negated) _at++;
                var name = ExpectName(null);
                if (!JinjaFilters.TestNames.Contains(name)) throw new JinjaException($"the test '{name}' is not supported", position);
                var args = new List<Expr>();
                if (IsOperator("(")) args = Arguments().Args;
                else if (Peek.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || (Peek.Kind == TokenKind.Operator && Peek.Value is "[" or "{")
                         || (Peek.Kind == TokenKind.Name && !TestArgStoppers.Contains(Peek.Value)))
                    args.Add(Postfix(Primary()));
                value = new TestExpr(value, name, negated, args, position);
            }
            else return value;
        }
    }

    private FilterExpr Filter(Expr? operand)
    {
        var position = Peek.Position;
        var name = ExpectName(null);
        if (!JinjaFilters.FilterNames.Contains(name)) throw new JinjaException($"the filter '{name}' is not supported", position);
        if (!IsOperator("(")) return new FilterExpr(operand, name, [], [], position);
        var (args, kwargs) = Arguments();
        return new FilterExpr(operand, name, args, kwargs, position);
    }
}
