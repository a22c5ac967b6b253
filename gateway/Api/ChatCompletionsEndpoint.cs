using System.Text.Json;
using MoeMesh.Engine.Text;
using MoeMesh.Gateway.Hosting;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Api;

/// <summary>POST /v1/chat/completions: messages rendered with the model's chat template.</summary>
public sealed class ChatCompletionsEndpoint(ModelHost host, EngineLoop loop)
{
    public async Task HandleAsync(HttpContext ctx)
    {
        var ct = ctx.RequestAborted;
        var r = await RequestReader.ParseAsync(ctx.Request, ct);
        r.CheckFields(RequestFields.Chat);
        Endpoints.CheckModel(r, host);
        var tools = ToolsRequest.Read(r);
        var (prompt, answerOnly) = ChatPrompt.Encode(r, host, tools);
        var wantLogprobs = r.Bool("logprobs") ?? false;
        var top = r.Int("top_logprobs", 0, SamplingRequest.MaxLogprobs);
        if (top is not null && !wantLogprobs) throw ApiException.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        var requested = r.Int("max_completion_tokens", 1) ?? r.Int("max_tokens", 1);
        var maxTokens = requested ?? Math.Max(1, host.Engine.MaxModelLength - prompt.Count);
        var sampling = SamplingRequest.Parse(r, maxTokens, wantLogprobs ? top ?? 0 : null, host.Engine.Model.Config.VocabSize);
        if (tools.Grammar is { } callGrammar)
        {
            // tool_choice required or named: the output is the calls, so no other constraint can apply to it.
            if (sampling.Params.Grammar is not null) throw ApiException.BadRequest("tool_choice \"required\" or a named function leaves no content for 'response_format', 'guided_choice' or 'guided_regex' to shape", "tool_choice");
            sampling = sampling with { Params = sampling.Params with { Grammar = callGrammar } };
        }
        Endpoints.CheckLength(prompt.Count, maxTokens, host, "messages");
        var choices = Enumerable.Range(0, sampling.N).Select(j => new Choice(j, new GenerationHandle(prompt, sampling.ForChoice(j)))).ToList();
        using var run = new GenerationRun(loop, choices, ct);
        run.Submit();
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var fmt = new LogprobsFormatter(host.Tokenizer, sampling.TokensAsIds);
        var promptTokens = prompt.Count * sampling.N;

        if (!sampling.Stream)
        {
            await run.CompleteAsync();
            var completionTokens = choices.Sum(c => c.CompletionTokens);
            await Results.Json(new
            {
                id,
                @object = "chat.completion",
                created,
                model = host.Name,
                choices = choices.Select(c =>
                {
                    var output = Output();
                    var (reasoning, content, calls) = output.Feed(c.Text.ToString(), final: true);
                    return new
                    {
                        index = c.Index,
                        message = Message(reasoning, content, calls),
                        logprobs = wantLogprobs ? fmt.Chat(c.Logprobs) : null,
                        finish_reason = output.FinishReason(Choice.ReasonText(c.Finish)),
                    };
                }),
                usage = Sse.Usage(promptTokens, completionTokens),
            }).ExecuteAsync(ctx);
            return;
        }

        await Sse.StartAsync(ctx.Response);
        try
        {
            foreach (var c in choices)
                await Sse.WriteAsync(ctx.Response, Chunk(c.Index, new { role = "assistant", content = "" }, null, null));
            var outputs = choices.ToDictionary(c => c.Index, _ => Output());
            await foreach (var (c, e) in run.Events())
            {
                var lp = wantLogprobs && e.Logprob is { } l ? fmt.Chat([l]) : null;
                var output = outputs[c.Index];
                // Reasoning, answer text and completed calls as their own deltas; the token's logprobs go with the first.
                var (reasoning, content, calls) = output.Feed(e.TextDelta, final: e.Finish is not null);
                if (reasoning.Length > 0)
                {
                    await Sse.WriteAsync(ctx.Response, Chunk(c.Index, new { reasoning_content = reasoning }, lp, null));
                    lp = null;
                }
                if (content.Length > 0 || (lp is not null && calls.Count == 0))
                {
                    await Sse.WriteAsync(ctx.Response, Chunk(c.Index, new { content }, lp, null));
                    lp = null;
                }
                for (var k = 0; k < calls.Count; k++)
                {
                    var call = calls[k];
                    var delta = new { tool_calls = new[] { new { index = output.CallCount - calls.Count + k, id = call.Id, type = "function", function = new { name = call.Name, arguments = call.Arguments } } } };
                    await Sse.WriteAsync(ctx.Response, Chunk(c.Index, delta, lp, null));
                    lp = null;
                }
                if (e.Finish is not null)
                    await Sse.WriteAsync(ctx.Response, Chunk(c.Index, new { }, null, output.FinishReason(Choice.ReasonText(e.Finish))));
                if (e.Error is not null)
                    await Sse.ErrorAsync(ctx.Response, e);
            }
            await Sse.EndAsync(ctx.Response, id, "chat.completion.chunk", created, host.Name,
                sampling.IncludeUsage ? (promptTokens, choices.Sum(c => c.CompletionTokens)) : null);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away; the run aborts its sequences.
        }

        object Chunk(int index, object delta, object? lp, string? finish) => new
        {
            id, @object = "chat.completion.chunk", created, model = host.Name,
            choices = new[] { new { index, delta, logprobs = lp, finish_reason = finish } },
        };

        // A constrained output (JSON, a choice) is the answer: the grammar leaves no room for a reasoning block.
        ChatOutput Output() => new(host.ReasoningParser ? new ReasoningParser(answerOnly || sampling.Params.Grammar is not null) : null, tools);
    }

    /// <summary>The assistant's message: its content, reasoning_content with the reasoning parser, and tool_calls when it made calls.</summary>
    private Dictionary<string, object?> Message(string reasoning, string content, List<ToolCall> calls)
    {
        var message = new Dictionary<string, object?>
        {
            ["role"] = "assistant",
            // Empty content is null where something else carries the answer, as OpenAI returns it.
            ["content"] = content.Length == 0 && (calls.Count > 0 || host.ReasoningParser) ? null : content,
        };
        if (host.ReasoningParser) message["reasoning_content"] = reasoning.Length == 0 ? null : reasoning;
        if (calls.Count > 0)
            message["tool_calls"] = calls.Select(c => new { id = c.Id, type = "function", function = new { name = c.Name, arguments = c.Arguments } }).ToArray();
        return message;
    }
}
