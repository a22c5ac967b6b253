using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Sampling;

/// <summary>
/// Picks the next token from one row of float32 logits: greedy at temperature 0, otherwise
/// temperature, top-k and top-p. Reported log-probabilities are those of the unmodified model
/// distribution (log-softmax of the raw logits), as vLLM reports them.
/// </summary>
public static class Sampler
{
    public static int Sample(ReadOnlySpan<float> logits, SamplingParams p, Random random)
    {
        if (p.Temperature <= 0 || p.TopK == 1) return ArgMax(logits);
        var candidates = Candidates(logits, p.TopK);
        // Softmax at the temperature over the candidates, in float64.
        var max = logits[candidates[0]];
        var probs = new double[candidates.Length];
        double sum = 0;
        for (var i = 0; i < candidates.Length; i++)
        {
            probs[i] = Math.Exp((logits[candidates[i]] - max) / p.Temperature);
            sum += probs[i];
        }
        var keep = candidates.Length;
        if (p.TopP < 1.0)
        {
            double cumulative = 0;
            for (var i = 0; i < candidates.Length; i++)
            {
                cumulative += probs[i] / sum;
                if (cumulative >= p.TopP) { keep = i + 1; break; }
            }
        }
        double kept = 0;
        for (var i = 0; i < keep; i++) kept += probs[i];
        var u = random.NextDouble() * kept;
        for (var i = 0; i < keep; i++)
        {
            u -= probs[i];
            if (u <= 0) return candidates[i];
        }
        return candidates[keep - 1];
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        var best = 0;
        for (var i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>Log-probability of <paramref name="token"/> and the <paramref name="top"/> most likely tokens.</summary>
    public static TokenLogprob Logprobs(ReadOnlySpan<float> logits, int token, int top)
    {
        var max = logits[ArgMax(logits)];
        double sum = 0;
        for (var i = 0; i < logits.Length; i++) sum += Math.Exp(logits[i] - max);
        var logZ = max + Math.Log(sum);
        var best = top > 0 ? Candidates(logits, top) : [];
        var list = new (int, float)[best.Length];
        for (var i = 0; i < best.Length; i++) list[i] = (best[i], (float)(logits[best[i]] - logZ));
        return new TokenLogprob(token, (float)(logits[token] - logZ), list);
    }

    /// <summary>Token ids sorted by descending logit (ties by id); the first <paramref name="topK"/> when topK is positive.</summary>
    private static int[] Candidates(ReadOnlySpan<float> logits, int topK)
    {
        var count = topK > 0 ? Math.Min(topK, logits.Length) : logits.Length;
        if (count <= 64) return TopByScan(logits, count);
        var ids = new int[logits.Length];
        for (var i = 0; i < ids.Length; i++) ids[i] = i;
        var values = logits.ToArray();
        Array.Sort(ids, (a, b) => values[b] != values[a] ? values[b].CompareTo(values[a]) : a.CompareTo(b));
        return count == ids.Length ? ids : ids[..count];
    }

    /// <summary>Small top-k by one pass with insertion into a sorted buffer.</summary>
    private static int[] TopByScan(ReadOnlySpan<float> logits, int count)
    {
        var ids = new int[count];
        var filled = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            if (filled == count && logits[i] <= logits[ids[count - 1]]) continue;
            var pos = filled < count ? filled++ : count - 1;
            while (pos > 0 && logits[ids[pos - 1]] < logits[i])
            {
                ids[pos] = ids[pos - 1];
                pos--;
            }
            ids[pos] = i;
        }
        return ids;
    }
}
