namespace MoeMesh.Engine.Text.Jinja;

// The parsed form of a template: statements (nodes) and expressions.

internal abstract record Node;

internal sealed record TextNode(string Text) : Node;

internal sealed record OutputNode(Expr Value) : Node;

internal sealed record IfNode(Expr Test, List<Node> Body, List<Node> Else) : Node;

internal sealed record ForNode(Expr Target, Expr Iterable, Expr? Filter, List<Node> Body, List<Node> Else) : Node;

/// <summary>{% set target = value %}, or the block form {% set target %}body{% endset %}.</summary>
internal sealed record SetNode(Expr Target, Expr? Value, List<Node>? Body) : Node;

internal sealed record MacroNode(string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body) : Node;

internal sealed record FilterBlockNode(FilterExpr Filter, List<Node> Body) : Node;

internal sealed record BreakNode : Node;

internal sealed record ContinueNode : Node;

internal abstract record Expr(int Position);

internal sealed record LiteralExpr(object? Value, int Position) : Expr(Position);

internal sealed record NameExpr(string Name, int Position) : Expr(Position);

internal sealed record ListExpr(List<Expr> Items, bool IsTuple, int Position) : Expr(Position);

internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Position) : Expr(Position);

internal sealed record AttributeExpr(Expr Target, string Name, int Position) : Expr(Position);

internal sealed record IndexExpr(Expr Target, Expr Key, int Position) : Expr(Position);

internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Position) : Expr(Position);

internal sealed record CallExpr(Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Position) : Expr(Position);

/// <summary>value | name(args); Operand is null inside a {% filter %} block, where the block's output is the operand.</summary>
internal sealed record FilterExpr(Expr? Operand, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Position) : Expr(Position);

internal sealed record TestExpr(Expr Operand, string Name, bool Negated, List<Expr> Args, int Position) : Expr(Position);

internal sealed record UnaryExpr(string Operator, Expr Operand, int Position) : Expr(Position);

internal sealed record BinaryExpr(string Operator, Expr Left, Expr Right, int Position) : Expr(Position);

internal sealed record ConditionalExpr(Expr Test, Expr Then, Expr? Else, int Position) : Expr(Position);
