using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Sampling;

/// <summary>
/// The request's changes to one row of logits before a token is picked, in vLLM's order and with its
/// semantics: logit_bias is added; repetition_penalty divides positive and multiplies negative logits of
/// every token seen so far (prompt and output); frequency_penalty subtracts its value times the number of
/// times a token was generated, presence_penalty its value once for every generated token.
/// Reported log-probabilities stay those of the raw logits.
/// </summary>
public static class LogitsAdjuster
{
    /// <summary>The adjusted row; null when the request changes nothing (the raw row is used as is).</summary>
    public static float[]? Apply(ReadOnlySpan<float> logits, SamplingParams p, TokenHistory? history)
    {
        if (!p.AdjustsLogits) return null;
        var x = logits.ToArray();
        foreach (var (token, bias) in p.LogitBias) x[token] += (float)bias;
        if (history is null) return x;
        if (p.RepetitionPenalty != 1.0)
        {
            var rp = (float)p.RepetitionPenalty;
            foreach (var t in history.Seen) x[t] = x[t] > 0 ? x[t] / rp : x[t] * rp;
        }
        if (p.FrequencyPenalty != 0 || p.PresencePenalty != 0)
        {
            foreach (var (t, n) in history.Generated) x[t] -= (float)(p.FrequencyPenalty * n + p.PresencePenalty);
        }
        return x;
    }
}
