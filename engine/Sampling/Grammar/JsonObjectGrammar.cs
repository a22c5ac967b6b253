namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>
/// Any JSON object (response_format {"type": "json_object"}), byte by byte: strings hold valid UTF-8 and JSON's
/// escapes, numbers JSON's form; nesting at most <see cref="MaxDepth"/> deep, numbers at most
/// <see cref="MaxNumberLength"/> bytes and whitespace runs at most <see cref="MaxWhitespace"/> (room for indentation), so
/// that the model cannot spend its tokens on padding. The object ends the output.
/// </summary>
public sealed class JsonObjectGrammar : OutputGrammar
{
    public const int MaxDepth = 16;
    public const int MaxNumberLength = 24;
    public const int MaxWhitespace = 32;

    public static readonly JsonObjectGrammar Instance = new();

    private JsonObjectGrammar()
    {
    }

    public override GrammarState Start() => JsonState.Initial;
}
