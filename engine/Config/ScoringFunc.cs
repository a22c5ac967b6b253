namespace MoeMesh.Engine.Config;

/// <summary>The router's score function (config key scoring_func).</summary>
public enum ScoringFunc
{
    Softmax,
    Sigmoid,
}
