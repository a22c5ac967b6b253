using System.Text.Json;
using MoeMesh.Engine.Sampling;
using MoeMesh.Gateway.Hosting;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Api;

/// <summary>POST /v1/completions: prompts as a string, strings, token ids or lists of token ids.</summary>
public sealed class CompletionsEndpoint(ModelHost host, EngineLoop loop)
{
    /// <summary>Sequences one request may ask for: prompts times n.</summary>
    public const int MaxChoices = 64;

    /// <summary>A prompt: its text (null when given as ids) and ids; <paramref name="BosAdded"/>: the first id is a beginning-of-sequence token the text does not show.</summary>
    private sealed record Prompt(string? Text, IReadOnlyList<int> Tokens, bool BosAdded = false);

    public async Task HandleAsync(HttpContext ctx)
    {
        var ct = ctx.RequestAborted;
        var r = await RequestReader.ParseAsync(ctx.Request, ct);
        r.CheckFields(RequestFields.Completions);
        Endpoints.CheckModel(r, host);
        var logprobs = r.Int("logprobs", 0, SamplingRequest.MaxLogprobs);
        var echo = r.Bool("echo") ?? false;
        var maxTokens = r.Int("max_tokens", 1) ?? 16;
        var sampling = SamplingRequest.Parse(r, maxTokens, logprobs, host.Engine.Model.Config.VocabSize);
        if (r.Int("best_of", 1) is { } bestOf && bestOf != 1 && bestOf != sampling.N)
            throw new ApiException(400, "'best_of' other than 1 or n is not supported by this server", "best_of", code: "unsupported_parameter");
        var prompts = ParsePrompts(r);
        if (prompts.Count * sampling.N > MaxChoices)
            throw ApiException.BadRequest($"a request asks for at most {MaxChoices} sequences (prompts times n); this one asks for {prompts.Count * sampling.N}", prompts.Count > 1 ? "prompt" : "n");
        foreach (var p in prompts) Endpoints.CheckLength(p.Tokens.Count, maxTokens, host, "prompt");
        var echoLogprobs = echo && logprobs is not null;
        var choices = prompts.SelectMany((p, pi) => Enumerable.Range(0, sampling.N).Select(j =>
        {
            var sp = sampling.ForChoice(j);
            if (echoLogprobs) sp = sp with { PromptLogprobs = logprobs };
            return new Choice(pi * sampling.N + j, new GenerationHandle(p.Tokens, sp));
        })).ToList();
        using var run = new GenerationRun(loop, choices, ct);
        run.Submit();
        var id = $"cmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var fmt = new LogprobsFormatter(host.Tokenizer, sampling.TokensAsIds);
        Prompt PromptOf(Choice c) => prompts[c.Index / sampling.N];
        string PromptText(Choice c) => PromptOf(c).Text ?? host.Tokenizer.Decode(c.Handle.Prompt, skipSpecialTokens: false);
        int promptTokens = prompts.Sum(p => p.Tokens.Count) * sampling.N;

        if (!sampling.Stream)
        {
            await run.CompleteAsync();
            var completionTokens = choices.Sum(c => c.CompletionTokens);
            await Results.Json(new
            {
                id,
                @object = "text_completion",
                created,
                model = host.Name,
                choices = choices.Select(c => new
                {
                    index = c.Index,
                    text = (echo ? PromptText(c) : "") + c.Text,
                    logprobs = logprobs is null ? null
                        : fmt.Completions(LogprobTokens(c, echoLogprobs), 0, echoLogprobs ? c.Handle.Prompt.Count : 0, PromptOf(c).BosAdded),
                    finish_reason = Choice.ReasonText(c.Finish),
                }),
                usage = Sse.Usage(promptTokens, completionTokens),
            }).ExecuteAsync(ctx);
            return;
        }

        await Sse.StartAsync(ctx.Response);
        var offsets = new Dictionary<int, int>();
        try
        {
            // The echoed prompt goes first. Its log-probabilities exist once prefill has run, that is when the
            // choice's first event arrives, so with logprobs it waits for that event.
            async Task EchoAsync(Choice c)
            {
                var text = PromptText(c);
                offsets[c.Index] = text.Length;
                await Sse.WriteAsync(ctx.Response, Chunk(c.Index, text,
                    echoLogprobs ? fmt.Completions(PromptLogprobTokens(c), 0, c.Handle.Prompt.Count, PromptOf(c).BosAdded) : null, null));
            }
            if (echo && !echoLogprobs)
                foreach (var c in choices) await EchoAsync(c);
            await foreach (var (c, e) in run.Events())
            {
                if (echoLogprobs && !offsets.ContainsKey(c.Index)) await EchoAsync(c);
                var offset = offsets.GetValueOrDefault(c.Index);
                offsets[c.Index] = offset + e.TextDelta.Length;
                object? lp = logprobs is not null && e.Logprob is { } l ? fmt.Completions([(l.TokenId, l)], offset) : null;
                if (e.Finish is null && e.TextDelta.Length == 0 && lp is null) continue;
                await Sse.WriteAsync(ctx.Response, Chunk(c.Index, e.TextDelta, lp, Choice.ReasonText(e.Finish)));
                if (e.Error is not null) await Sse.ErrorAsync(ctx.Response, e);
            }
            await Sse.EndAsync(ctx.Response, id, "text_completion", created, host.Name,
                sampling.IncludeUsage ? (promptTokens, choices.Sum(c => c.CompletionTokens)) : null);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away; the run aborts its sequences.
        }

        object Chunk(int index, string text, object? lp, string? finish) => new
        {
            id, @object = "text_completion", created, model = host.Name,
            choices = new[] { new { index, text, logprobs = lp, finish_reason = finish } },
        };
    }

    private static List<(int, TokenLogprob?)> PromptLogprobTokens(Choice c)
    {
        var seq = c.Handle.Sequence;
        return c.Handle.Prompt.Select((t, i) => (t, i == 0 ? null : seq?.PromptLogprobs?[i])).ToList();
    }

    private static List<(int, TokenLogprob?)> LogprobTokens(Choice c, bool withPrompt)
    {
        var generated = c.Logprobs.Select(l => (l.TokenId, (TokenLogprob?)l));
        return withPrompt ? [.. PromptLogprobTokens(c), .. generated] : generated.ToList();
    }

    /// <summary>Whether a text prompt gets the beginning-of-sequence token first (the tokenizer config asks, the model has one).</summary>
    private static bool AddsBos(ModelHost host) => host.TokenizerConfig.AddBosToken && host.Engine.Model.Config.BosTokenId is not null;

    /// <summary>A text prompt's ids, the beginning-of-sequence token first where <paramref name="addSpecialTokens"/> and the tokenizer config ask for it.</summary>
    internal static List<int> EncodePrompt(ModelHost host, string text, bool addSpecialTokens)
    {
        var tokens = Endpoints.Encode(host, text, "prompt");
        if (addSpecialTokens && AddsBos(host)) tokens.Insert(0, host.Engine.Model.Config.BosTokenId!.Value);
        return tokens;
    }

    private List<Prompt> ParsePrompts(RequestReader r)
    {
        if (r.Get("prompt") is not { } p) throw ApiException.BadRequest("'prompt' is required", "prompt");
        Prompt FromText(string text)
        {
            if (text.Length == 0) throw ApiException.BadRequest("the prompt is empty", "prompt");
            return new Prompt(text, EncodePrompt(host, text, addSpecialTokens: true), BosAdded: AddsBos(host));
        }
        Prompt FromIds(JsonElement array)
        {
            var ids = new List<int>();
            foreach (var e in array.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out var id))
                    throw ApiException.BadRequest("'prompt' token lists must hold integers", "prompt");
                if (id < 0 || id >= host.Engine.Model.Config.VocabSize)
                    throw ApiException.BadRequest($"token id {id} is outside the vocabulary (0..{host.Engine.Model.Config.VocabSize - 1})", "prompt");
                ids.Add(id);
            }
            if (ids.Count == 0) throw ApiException.BadRequest("the prompt is empty", "prompt");
            return new Prompt(null, ids);
        }
        switch (p.ValueKind)
        {
            case JsonValueKind.String:
                return [FromText(p.GetString()!)];
            case JsonValueKind.Array:
                var items = p.EnumerateArray().ToList();
                if (items.Count == 0) throw ApiException.BadRequest("the prompt is empty", "prompt");
                if (items.All(i => i.ValueKind == JsonValueKind.Number)) return [FromIds(p)];
                if (items.Count > MaxChoices) throw ApiException.BadRequest($"'prompt' holds at most {MaxChoices} prompts", "prompt");
                if (items.All(i => i.ValueKind == JsonValueKind.String)) return items.Select(i => FromText(i.GetString()!)).ToList();
                if (items.All(i => i.ValueKind == JsonValueKind.Array)) return items.Select(FromIds).ToList();
                break;
        }
        throw ApiException.BadRequest("'prompt' must be a string, a list of strings, a list of token ids or a list of such lists", "prompt");
    }
}
