using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests.Sampling;

/// <summary>Penalties and logit bias against values worked out by hand from OpenAI's and vLLM's definitions.</summary>
public sealed class LogitsAdjusterTests
{
    private static readonly float[] Logits = [0.1f, 2.0f, -1.0f, 1.5f, 0.0f];

    private static float[] Apply(SamplingParams p, int[] prompt, int[] output)
    {
        var history = new TokenHistory(prompt);
        foreach (var t in output) history.Add(t);
        return LogitsAdjuster.Apply(Logits, p, history)!;
    }

    [Fact]
    public void NothingToAdjust_UsesTheRawRow()
    {
        Assert.Null(LogitsAdjuster.Apply(Logits, new SamplingParams(), new TokenHistory([1, 2, 3])));
        Assert.False(new SamplingParams { PresencePenalty = 0, FrequencyPenalty = 0, RepetitionPenalty = 1 }.AdjustsLogits);
    }

    [Fact]
    public void LogitBias_IsAdded()
    {
        var x = Apply(new SamplingParams { LogitBias = new Dictionary<int, double> { [2] = 5, [1] = -1 } }, [0], []);
        Assert.Equal([0.1f, 1.0f, 4.0f, 1.5f, 0.0f], x);
        Assert.Equal(2, Sampler.ArgMax(x));
    }

    [Fact]
    public void RepetitionPenalty_ShrinksSeenTokensTowardsUnlikely_PromptIncluded()
    {
        // Token 1 (2.0) is in the prompt, token 2 (-1.0) in the output, token 3 (1.5) nowhere.
        var x = Apply(new SamplingParams { RepetitionPenalty = 2 }, [1], [2, 2]);
        Assert.Equal([0.1f, 1.0f, -2.0f, 1.5f, 0.0f], x);
        Assert.Equal(3, Sampler.ArgMax(x));
    }

    [Fact]
    public void FrequencyAndPresence_CountGeneratedTokensOnly()
    {
        // Output: token 1 twice, token 4 once; token 3 appears only in the prompt and is not penalised.
        var x = Apply(new SamplingParams { FrequencyPenalty = 0.5, PresencePenalty = 0.25 }, [3], [1, 4, 1]);
        Assert.Equal([0.1f, 0.75f, -1.0f, 1.5f, -0.75f], x);
        Assert.Equal(3, Sampler.ArgMax(x));
    }

    [Fact]
    public void NegativePenalties_Encourage()
    {
        var x = Apply(new SamplingParams { PresencePenalty = -2 }, [0], [0]);
        Assert.Equal(2.1f, x[0]);
        Assert.Equal(0, Sampler.ArgMax(x));
    }
}
