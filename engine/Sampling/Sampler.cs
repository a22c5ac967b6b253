using System.Buffers;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Sampling;

/// <summary>
/// Picks the next token from one row of float32 logits: greedy at temperature 0, otherwise
/// temperature, top-k and top-p. Reported log-probabilities are those of the unmodified model
/// distribution (log-softmax of the raw logits), as vLLM reports them.
/// The work per token is a few passes over the row: the vocabulary is never sorted as a whole unless
/// top-k or top-p need nearly all of it.
/// </summary>
public static class Sampler
{
    /// <summary>Top-k up to this size is kept by one scan with insertion; larger cuts and top-p widen a window instead.</summary>
    private const int ScanLimit = 64;

    public static int Sample(ReadOnlySpan<float> logits, SamplingParams p, Random random)
    {
        if (p.Temperature <= 0 || p.TopK == 1) return ArgMax(logits);
        if (p.TopK <= 0 && p.TopP >= 1.0) return SampleAll(logits, p.Temperature, random);
        var (candidates, total) = Candidates(logits, p.TopK, p.TopP, p.Temperature);
        // Softmax at the temperature over the candidates, in float64; top-p over the mass of the top-k set
        // (the whole vocabulary when there is no top-k), as vLLM applies them.
        var max = logits[candidates[0]];
        var probs = new double[candidates.Length];
        for (var i = 0; i < candidates.Length; i++) probs[i] = Math.Exp((logits[candidates[i]] - max) / p.Temperature);
        var keep = candidates.Length;
        if (p.TopP < 1.0)
        {
            double cumulative = 0;
            for (var i = 0; i < candidates.Length; i++)
            {
                cumulative += probs[i] / total;
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
        // Rounding left a sliver: the last candidate with any weight (never one masked to minus infinity).
        for (var i = keep - 1; i > 0; i--)
            if (probs[i] > 0) return candidates[i];
        return candidates[0];
    }

    /// <summary>Plain sampling at a temperature: one pass for the softmax mass, one to find the draw; no sort.</summary>
    private static int SampleAll(ReadOnlySpan<float> logits, double temperature, Random random)
    {
        var max = logits[ArgMax(logits)];
        var weights = ArrayPool<double>.Shared.Rent(logits.Length);
        try
        {
            double sum = 0;
            for (var i = 0; i < logits.Length; i++) sum += weights[i] = Math.Exp((logits[i] - max) / temperature);
            var u = random.NextDouble() * sum;
            var last = 0;
            for (var i = 0; i < logits.Length; i++)
            {
                if (weights[i] <= 0) continue;
                last = i;
                u -= weights[i];
                if (u <= 0) return i;
            }
            return last;
        }
        finally
        {
            ArrayPool<double>.Shared.Return(weights);
        }
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
        var best = top > 0 ? TopByScan(logits, Math.Min(top, logits.Length)) : [];
        var list = new (int, float)[best.Length];
        for (var i = 0; i < best.Length; i++) list[i] = (best[i], (float)(logits[best[i]] - logZ));
        return new TokenLogprob(token, (float)(logits[token] - logZ), list);
    }

    /// <summary>
    /// The tokens top-k and top-p can keep, sorted by descending logit (ties by id): the top-k set when there
    /// is a cut, else enough of the best tokens to hold the top-p mass; and the mass top-p is taken of
    /// (relative to the best token's weight). Tokens are gathered from a window below the best logit that
    /// widens until it holds what is needed, so only the window is sorted.
    /// </summary>
    private static (int[] Ids, double Total) Candidates(ReadOnlySpan<float> logits, int topK, double topP, double temperature)
    {
        var k = topK > 0 ? Math.Min(topK, logits.Length) : 0;
        if (k is > 0 and <= ScanLimit)
        {
            var ids = TopByScan(logits, k);
            double mass = 0;
            for (var i = 0; i < ids.Length; i++) mass += Math.Exp((logits[ids[i]] - logits[ids[0]]) / temperature);
            return (ids, mass);
        }
        var max = logits[ArgMax(logits)];
        var weights = ArrayPool<double>.Shared.Rent(logits.Length);
        try
        {
            double total = 0;
            for (var i = 0; i < logits.Length; i++) total += weights[i] = Math.Exp((logits[i] - max) / temperature);
            // Window: tokens whose weight is at least e^-width of the best one's; the last round takes every token.
            for (var width = 8.0; ; width *= 2)
            {
                var floor = width < 1024 ? Math.Exp(-width) : 0;
                var count = 0;
                double mass = 0;
                for (var i = 0; i < logits.Length; i++)
                {
                    if (weights[i] < floor) continue;
                    count++;
                    mass += weights[i];
                }
                var enough = k > 0 ? count >= k : mass >= topP * total;
                if (!enough && floor > 0) continue;
                var window = new (float NegLogit, int Id)[count];
                for (int i = 0, j = 0; i < logits.Length; i++)
                    if (weights[i] >= floor) window[j++] = (-logits[i], i);
                Array.Sort(window);
                var taken = k > 0 ? Math.Min(k, count) : count;
                var ids = new int[taken];
                double keptMass = 0;
                for (var i = 0; i < taken; i++)
                {
                    ids[i] = window[i].Id;
                    keptMass += weights[ids[i]];
                }
                // With a top-k cut, top-p is taken of the top-k mass; without, of the whole vocabulary's.
                return (ids, k > 0 ? keptMass : total);
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(weights);
        }
    }

    /// <summary>Small top-k by one pass with insertion into a sorted buffer (ties by id).</summary>
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
