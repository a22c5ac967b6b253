using System.Text;
using MoeMesh.Gateway.Api;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>DeepSeek's tool-call output (V3/R1 and V3.1 forms) parsed into content and calls, whole and streamed.</summary>
public sealed class ToolCallParserTests
{
    private const string B = ToolCallParser.CallsBegin, E = ToolCallParser.CallsEnd;
    private const string CB = ToolCallParser.CallBegin, CE = ToolCallParser.CallEnd, S = ToolCallParser.Separator;
    private static readonly string[] Tools = ["get_weather", "search"];

    private static string V3Call(string name, string args) => $"{CB}function{S}{name}\n```json\n{args}\n```{CE}";

    public static readonly TheoryData<string, string?, string[]> Outputs = new()
    {
        // No calls: all content.
        { "Just an answer.", "Just an answer.", [] },
        // DeepSeek-V3/R1: text, then one call.
        { "Let me check." + B + V3Call("get_weather", """{"city": "Paris"}""") + E, "Let me check.", ["get_weather {\"city\": \"Paris\"}"] },
        // Several calls, a newline between them, as the V3 template writes them back.
        { B + V3Call("get_weather", """{"city": "Paris"}""") + "\n" + V3Call("search", """{"q": "news"}""") + E, null,
            ["get_weather {\"city\": \"Paris\"}", "search {\"q\": \"news\"}"] },
        // DeepSeek-V3.1: the name before the separator, the arguments after it.
        { B + CB + "get_weather" + S + """{"city":"Rome"}""" + CE + CB + "search" + S + """{"q":"x"}""" + CE + E, null,
            ["get_weather {\"city\":\"Rome\"}", "search {\"q\":\"x\"}"] },
        // A name the request did not offer: from there on the output is text, as written.
        { "a" + B + V3Call("delete_all", "{}") + E, "a" + B + V3Call("delete_all", "{}") + E, [] },
        { B + "\n" + V3Call("delete_all", "{}") + "\n" + V3Call("search", "{}") + E, B + "\n" + V3Call("delete_all", "{}") + "\n" + V3Call("search", "{}") + E, [] },
        // Arguments that are not a JSON object.
        { B + CB + "search" + S + "{not json" + CE + E, B + CB + "search" + S + "{not json" + CE + E, [] },
        { B + CB + "search" + S + "[1, 2]" + CE + E, B + CB + "search" + S + "[1, 2]" + CE + E, [] },
        // A good call, then a bad one: the good one is a call, the rest text.
        { B + V3Call("search", """{"q": "a"}""") + "\n" + CB + "nope" + CE + E, "\n" + CB + "nope" + CE + E, ["search {\"q\": \"a\"}"] },
        // Cut off inside a call (max_tokens): the unfinished call is text.
        { "x" + B + CB + "search" + S + """{"q": """, "x" + B + CB + "search" + S + """{"q": """, [] },
        // Garbage inside the section.
        { B + "hello", B + "hello", [] },
        // The end marker inside a string of the arguments (the grammar allows it there): the call ends at the marker after the object.
        { B + CB + "search" + S + $$"""{"q": "a{{CE}}b"}""" + CE + E, null, [$$"""search {"q": "a{{CE}}b"}"""] },
        { B + V3Call("search", $$"""{"q": "{{CE}}"}""") + E, null, [$$"""search {"q": "{{CE}}"}"""] },
        // A marker's beginning at the very end is text.
        { "tail <｜tool▁ca", "tail <｜tool▁ca", [] },
    };

    [Theory]
    [MemberData(nameof(Outputs))]
    public void Output_ParsesToContentAndCalls_WholeAndInEveryStreaming(string output, string? content, string[] calls)
    {
        var (whole, parsed) = ToolCallParser.Parse(output, Tools);
        Assert.Equal(content, whole);
        Assert.Equal(calls, parsed.Select(c => $"{c.Name} {c.Arguments}"));
        Assert.All(parsed, c => Assert.StartsWith("call_", c.Id));
        Assert.Equal(parsed.Count, parsed.Select(c => c.Id).Distinct().Count());
        // Every way of cutting the output into three deltas releases the same content and calls.
        var step = Math.Max(1, output.Length / 40);
        for (var i = 0; i <= output.Length; i += step)
            for (var j = i; j <= output.Length; j += step)
            {
                var parser = new ToolCallParser(Tools);
                var text = new StringBuilder();
                var names = new List<string>();
                foreach (var (delta, final) in new[] { (output[..i], false), (output[i..j], false), (output[j..], true) })
                {
                    var (c, k) = parser.Feed(delta, final);
                    text.Append(c);
                    names.AddRange(k.Select(x => $"{x.Name} {x.Arguments}"));
                }
                Assert.True((content ?? "") == text.ToString(), $"cut at {i}, {j}: '{text}'");
                Assert.Equal(calls, names);
            }
    }

    [Fact]
    public void ToolsOff_LeaveTheOutputAsContent()
    {
        var text = B + V3Call("get_weather", "{}") + E;
        var (_, content, calls) = new ChatOutput(null, ToolsRequest.Off).Feed(text, final: true);
        Assert.Equal(text, content);
        Assert.Empty(calls);
    }

    [Fact]
    public void ParallelCallsOff_KeepsTheFirstCall()
    {
        var text = B + V3Call("get_weather", "{}") + V3Call("search", "{}") + E;
        var parsing = new ChatOutput(null, new ToolsRequest(System.Text.Json.JsonDocument.Parse("[]").RootElement, new HashSet<string>(Tools), Parallel: false));
        var (_, content, first) = parsing.Feed(text, final: true);
        Assert.Equal("", content);
        Assert.Equal(["get_weather"], first.Select(c => c.Name));
        Assert.Equal("tool_calls", parsing.FinishReason("stop"));
        Assert.Equal("length", parsing.FinishReason("length"));
    }
}
