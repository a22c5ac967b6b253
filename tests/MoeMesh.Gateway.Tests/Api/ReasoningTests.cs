using System.Text.Json;
using MoeMesh.Engine.Text;
using MoeMesh.Gateway.Api;
using MoeMesh.Testing;

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

    /// <summary>Where the template closed the reasoning block in the prompt (thinking off), the whole output is the answer, whole and streamed.</summary>
    [Theory]
    [InlineData("Plain answer</think>with a marker")]
    [InlineData("<think>not a block</think>")]
    public void AnswerOnly_KeepsTheWholeOutputAsContent(string output)
    {
        Assert.Equal((null, output), ReasoningParser.Split(output, answerOnly: true));
        var parser = new ReasoningParser(answerOnly: true);
        var halves = (parser.Feed(output[..5], false), parser.Feed(output[5..], true));
        Assert.Equal(output, halves.Item1.Content + halves.Item2.Content);
        Assert.Equal("", halves.Item1.Reasoning + halves.Item2.Reasoning);
    }

    /// <summary>Which real templates' prompts close the reasoning block: DeepSeek-V3.1 and Qwen3 with thinking off do; R1's and thinking on do not.</summary>
    [Theory]
    [InlineData("deepseek-v3.1", """{"thinking": false}""", true)]
    [InlineData("deepseek-v3.1", "{}", true)]
    [InlineData("deepseek-v3.1", """{"thinking": true}""", false)]
    [InlineData("deepseek-r1", "{}", false)]
    [InlineData("qwen3", """{"enable_thinking": false}""", true)]
    [InlineData("qwen3", "{}", false)]
    public void TemplatesWithAThinkingSwitch_CloseTheBlockWhenItIsOff(string template, string kwargs, bool closed)
    {
        var source = template switch
        {
            "deepseek-v3.1" => TemplateOracle.Fixture("deepseek-v3.1.jinja"),
            "deepseek-r1" => TemplateOracle.Fixture("deepseek-r1-distill.jinja"),
            _ => TemplateOracle.FromPackage("tokenizer-qwen3").Template,
        };
        var extra = JsonDocument.Parse(kwargs).RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone());
        var prompt = ChatTemplate.FromJinja(source, "<s>", "</s>").Render([new ChatMessage("user", "Hi")], extra: extra).Text;
        Assert.Equal(closed, ReasoningParser.ClosedBy(prompt));
    }
}
