namespace MoeMesh.Engine.Text.Jinja;

/// <summary>Parses template tokens into nodes, with Jinja's operator precedence.</summary>
internal sealed partial class JinjaParser
{
    /// <summary>Deepest nesting of statements, and of expressions, the recursive descent takes.</summary>
    private const int MaxNesting = 200;
    private readonly List<Token> _tokens;
    private int _at;
    private int _nesting;

    private JinjaParser(List<Token> tokens) => _tokens = tokens;

    public static List<Node> Parse(string template)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(template));
        var body = parser.Body();
        if (parser.Peek.Kind != TokenKind.End)
            throw new JinjaException($"unexpected '{parser.KeywordAfterOpen()}' tag", parser.Peek.Position);
        return body;
    }

    private Token Peek => _tokens[_at];

    private Token Next() => _tokens[_at++];

    /// <summary>Nodes up to the end of the template or a statement tag whose keyword is in <paramref name="stops"/> (left unread).</summary>
    private List<Node> Body(params string[] stops)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var t = Peek;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (stops.Length > 0) throw new JinjaException($"the template ends before '{{% {stops[^1]} %}}'", t.Position);
                    return nodes;
                case TokenKind.Text:
                    _at++;
                    nodes.Add(new TextNode(t.Value));
                    break;
                case TokenKind.OpenExpression:
                    _at++;
                    nodes.Add(new OutputNode(Expression()));
                    Expect(TokenKind.CloseExpression, "}}");
                    break;
                case TokenKind.OpenStatement:
                    if (stops.Contains(KeywordAfterOpen())) return nodes;
                    _at++;
                    if (++_nesting > MaxNesting) throw new JinjaException($"statements nested deeper than {MaxNesting}", t.Position);
                    nodes.Add(Statement());
                    _nesting--;
                    break;
                default:
                    throw new JinjaException($"unexpected '{t.Value}'", t.Position);
            }
        }
    }

    private string KeywordAfterOpen() => _tokens[_at + 1] is { Kind: TokenKind.Name } k ? k.Value : "";

    private Node Statement()
    {
        var keyword = Next();
        if (keyword.Kind != TokenKind.Name) throw new JinjaException("a statement tag must start with a keyword", keyword.Position);
        switch (keyword.Value)
        {
            case "if":
                return If();
            case "for":
                return For();
            case "set":
                return Set();
            case "macro":
                return Macro();
            case "filter":
            {
                var filter = Filter(null);
                Expect(TokenKind.CloseStatement, "%}");
                var body = Body("endfilter");
                EndTag("endfilter");
                return new FilterBlockNode(filter, body);
            }
            case "break":
                Expect(TokenKind.CloseStatement, "%}");
                return new BreakNode();
            case "continue":
                Expect(TokenKind.CloseStatement, "%}");
                return new ContinueNode();
            default:
                throw new JinjaException($"the '{keyword.Value}' tag is not supported", keyword.Position);
        }
    }

    private IfNode If()
    {
        var test = Expression();
        Expect(TokenKind.CloseStatement, "%}");
        var body = Body("elif", "else", "endif");
        _at++;
        var keyword = Next().Value;
        if (keyword == "elif") return new IfNode(test, body, [If()]);
        var orElse = new List<Node>();
        if (keyword == "else")
        {
            Expect(TokenKind.CloseStatement, "%}");
            orElse = Body("endif");
            _at += 2;
        }
        Expect(TokenKind.CloseStatement, "%}");
        return new IfNode(test, body, orElse);
    }

    private ForNode For()
    {
        var target = Target(allowAttribute: false);
        ExpectName("in");
        var iterable = Or();
        Expr? filter = null;
        if (IsName("if"))
        {
            _at++;
            filter = Expression();
        }
        if (IsName("recursive")) throw new JinjaException("recursive loops are not supported", Peek.Position);
        Expect(TokenKind.CloseStatement, "%}");
        var body = Body("else", "endfor");
        var orElse = new List<Node>();
        if (KeywordAfterOpen() == "else")
        {
            _at += 2;
            Expect(TokenKind.CloseStatement, "%}");
            orElse = Body("endfor");
        }
        EndTag("endfor");
        return new ForNode(target, iterable, filter, body, orElse);
    }

    private SetNode Set()
    {
        var target = Target(allowAttribute: true);
        if (IsOperator("="))
        {
            _at++;
            var value = Tuple();
            Expect(TokenKind.CloseStatement, "%}");
            return new SetNode(target, value, null);
        }
        Expect(TokenKind.CloseStatement, "%}");
        var body = Body("endset");
        EndTag("endset");
        return new SetNode(target, null, body);
    }

    private MacroNode Macro()
    {
        var name = ExpectName(null);
        ExpectOperator("(");
        var parameters = new List<(string, Expr?)>();
        while (!IsOperator(")"))
        {
            if (parameters.Count > 0) ExpectOperator(",");
            var p = ExpectName(null);
            Expr? defaultValue = null;
            if (IsOperator("="))
            {
                _at++;
                defaultValue = Expression();
            }
            parameters.Add((p, defaultValue));
        }
        _at++;
        Expect(TokenKind.CloseStatement, "%}");
        var body = Body("endmacro");
        EndTag("endmacro");
        return new MacroNode(name, parameters, body);
    }

    private void EndTag(string keyword)
    {
        Expect(TokenKind.OpenStatement, "{%");
        ExpectName(keyword);
        Expect(TokenKind.CloseStatement, "%}");
    }

    /// <summary>An assignment target: a name, name.attribute (set only), or names separated by commas.</summary>
    private Expr Target(bool allowAttribute)
    {
        var position = Peek.Position;
        var parenthesised = IsOperator("(");
        if (parenthesised) _at++;
        var names = new List<Expr>();
        do
        {
            if (names.Count > 0) _at++;
            Expr target = new NameExpr(ExpectName(null), Peek.Position);
            while (allowAttribute && IsOperator("."))
            {
                _at++;
                target = new AttributeExpr(target, ExpectName(null), Peek.Position);
            }
            names.Add(target);
        }
        while (IsOperator(","));
        if (parenthesised) ExpectOperator(")");
        return names.Count == 1 && !parenthesised ? names[0] : new ListExpr(names, true, position);
    }

    private bool IsName(string name) => Peek is { Kind: TokenKind.Name } t && t.Value == name;

    private bool IsOperator(string op) => Peek is { Kind: TokenKind.Operator } t && t.Value == op;

    private string ExpectName(string? name)
    {
        var t = Next();
        if (t.Kind != TokenKind.Name || (name is not null && t.Value != name))
            throw new JinjaException($"expected {(name is null ? "a name" : $"'{name}'")}", t.Position);
        return t.Value;
    }

    private void ExpectOperator(string op)
    {
        var t = Next();
        if (t.Kind != TokenKind.Operator || t.Value != op) throw new JinjaException($"expected '{op}'", t.Position);
    }

    private void Expect(TokenKind kind, string text)
    {
        var t = Next();
        if (t.Kind != kind) throw new JinjaException($"expected '{text}'", t.Position);
    }
}
