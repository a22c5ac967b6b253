using System.Text.Json;
using MoeMesh.Gateway.Api;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>--reasoning-parser deepseek_r1: reasoning_content up to "&lt;/think&gt;", content after, whole and streamed.</summary>
public sealed class ReasoningTests
{
    [Theory]
    [InlineData("<think>\nFirst, plan.\n</think>\n\nThe answer is 4.", "\nFirst, plan.\n", "\n\nThe answer is 4.")]
    [InlineData("Still thinking 😀 with no end", "Still thinking 😀 with no end", null)]
    [InlineData("plan</think>answer", "plan", "answer")]
    [InlineData("</think>only an answer", null, "only an answer")]
    [InlineData("<think></think>", null, null)]
    [InlineData("<thin", "<thin", null)]
    [InlineData("a </thin k> b </think></think>c", "a </thin k> b ", "</think>c")]
    [InlineData("x<think>y</think>z", "x<think>y", "z")]
    public void Split_AndEveryStreamingOfIt_Agree(string output, string? reasoning, string? content)
    {
        Assert.Equal((reasoning, content), ReasoningParser.Split(output));
        // Every way of cutting the output into two or three deltas releases the same parts.
        for (var i = 0; i <= output.Length; i++)
            for (var j = i; j <= output.Length; j++)
            {
                var parser = new ReasoningParser();
                var (r, c) = (new System.Text.StringBuilder(), new System.Text.StringBuilder());
                foreach (var (delta, final) in new[] { (output[..i], false), (output[i..j], false), (output[j..], true) })
                {
                    var (dr, dc) = parser.Feed(delta, final);
                    r.Append(dr);
                    c.Append(dc);
                }
                Assert.True((reasoning ?? "") == r.ToString() && (content ?? "") == c.ToString(), $"cut at {i}, {j}: '{r}' / '{c}'");
            }
    }

    /// <summary>
    /// A gateway with the parser returns, for an output without "&lt;/think&gt;" (the demo model's), the whole text as
    /// reasoning_content and no content, whole and streamed, where a gateway without it returns it as content.
    /// </summary>
    [Fact]
    public async Task Gateway_ReturnsTheReasoningApart()
    {
        object Request(bool stream) => new
        {
            messages = new[] { new { role = "user", content = "Think about it" } }, max_tokens = 10, temperature = 0, ignore_eos = true, stream,
        };
        await using var plain = await GatewayServer.StartAsync();
        await using var parsing = await GatewayServer.StartAsync("--reasoning-parser", "deepseek_r1");
        var text = (await plain.PostJsonAsync("/v1/chat/completions", Request(false))).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.DoesNotContain(ReasoningParser.End, text);
        Assert.False(text.StartsWith(ReasoningParser.Start));

        var message = (await parsing.PostJsonAsync("/v1/chat/completions", Request(false))).GetProperty("choices")[0].GetProperty("message");
        Assert.Equal(text, message.GetProperty("reasoning_content").GetString());
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);

        var deltas = (await parsing.PostStreamAsync("/v1/chat/completions", Request(true))).Select(c => c.GetProperty("choices")[0].GetProperty("delta")).ToList();
        Assert.Equal(text, string.Concat(deltas.Where(d => d.TryGetProperty("reasoning_content", out _)).Select(d => d.GetProperty("reasoning_content").GetString())));
        Assert.Equal("", string.Concat(deltas.Where(d => d.TryGetProperty("content", out _)).Select(d => d.GetProperty("content").GetString())));
    }
}
