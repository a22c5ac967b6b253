namespace MoeMesh.Engine.Sampling.Grammar;

/// <summary>A language the output must stay in, read byte by byte (the tokens' own UTF-8 bytes).</summary>
public abstract class OutputGrammar
{
    /// <summary>The state before the first byte.</summary>
    public abstract GrammarState Start();
}
