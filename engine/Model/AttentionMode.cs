namespace MoeMesh.Engine.Model;

/// <summary>Which MLA form to use. Auto takes the naive form for prefill and the absorbed form for decode.</summary>
public enum AttentionMode
{
    Auto,
    Naive,
    Absorbed,
}
