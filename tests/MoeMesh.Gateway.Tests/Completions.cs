using System.Text.Json;

namespace MoeMesh.Gateway.Tests;

/// <summary>Greedy completions responses (logprobs of at least 2, tokens as ids) compared as the same run computed differently.</summary>
public static class Completions
{
    /// <summary>Distributed sums, batching and cached pages change logprobs at float-rounding level only.</summary>
    public const double LogprobTolerance = 1e-4;

    /// <summary>Per choice, its greedy steps.</summary>
    public static List<List<GreedyStep>> Steps(JsonElement response) =>
        response.GetProperty("choices").EnumerateArray().Select(c =>
        {
            var lp = c.GetProperty("logprobs");
            var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => Id(t.GetString()!)).ToList();
            var logprobs = lp.GetProperty("token_logprobs").EnumerateArray().ToList();
            var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToList();
            return tokens.Select((t, i) => new GreedyStep(t, logprobs[i].GetDouble(),
                tops[i].EnumerateObject().ToDictionary(p => Id(p.Name), p => p.Value.GetDouble()))).ToList();
        }).ToList();

    /// <summary>Same choices; each the same greedy run to float rounding (see <see cref="GreedyStep.AssertSame"/>).</summary>
    public static void AssertSame(JsonElement expected, JsonElement actual)
    {
        var e = Steps(expected);
        var a = Steps(actual);
        Assert.Equal(e.Count, a.Count);
        for (var i = 0; i < e.Count; i++) GreedyStep.AssertSame(e[i], a[i], LogprobTolerance, $"choice {i}");
    }

    private static int Id(string token) =>
        token.StartsWith("token_id:", StringComparison.Ordinal) ? int.Parse(token["token_id:".Length..]) : throw new ArgumentException($"ask for return_tokens_as_token_ids: got '{token}'");
}
