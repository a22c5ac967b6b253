using MoeMesh.Gateway.Hosting;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// vLLM's POST /tokenize and /detokenize (also under /v1; clients count and budget tokens with them): a prompt
/// encoded as /v1/completions encodes it (the beginning-of-sequence token first where add_special_tokens and the
/// tokenizer config ask for it), or messages rendered and encoded as /v1/chat/completions does; and ids back to text.
/// </summary>
public sealed class TokenizeEndpoints(ModelHost host)
{
    public async Task TokenizeAsync(HttpContext ctx)
    {
        var r = await RequestReader.ParseAsync(ctx.Request, ctx.RequestAborted);
        List<int> tokens;
        if (r.Get("messages") is not null)
        {
            r.CheckFields(RequestFields.TokenizeChat);
            Endpoints.CheckModel(r, host);
            tokens = ChatPrompt.Encode(r, host).Ids;
        }
        else
        {
            r.CheckFields(RequestFields.TokenizePrompt);
            Endpoints.CheckModel(r, host);
            var text = r.String("prompt") ?? throw ApiException.BadRequest("'prompt' or 'messages' is required", "prompt");
            tokens = CompletionsEndpoint.EncodePrompt(host, text, r.Bool("add_special_tokens") ?? true);
        }
        var strings = r.Bool("return_token_strs") ?? false;
        await Results.Json(new
        {
            count = tokens.Count,
            max_model_len = host.Engine.MaxModelLength,
            tokens,
            token_strs = strings ? tokens.Select(host.Tokenizer.TokenText).ToArray() : null,
        }).ExecuteAsync(ctx);
    }

    public async Task DetokenizeAsync(HttpContext ctx)
    {
        var r = await RequestReader.ParseAsync(ctx.Request, ctx.RequestAborted);
        r.CheckFields(RequestFields.Detokenize);
        Endpoints.CheckModel(r, host);
        if (r.Get("tokens") is null) throw ApiException.BadRequest("'tokens' is required", "tokens");
        // Ids as a prompt or an output would hold them: at most the context length.
        var tokens = r.Ints("tokens", host.Engine.MaxModelLength);
        var vocabulary = host.Engine.Model.Config.VocabSize;
        foreach (var t in tokens)
            if (t < 0 || t >= vocabulary) throw ApiException.BadRequest($"token id {t} is outside the vocabulary (0..{vocabulary - 1})", "tokens");
        await Results.Json(new { prompt = host.Tokenizer.Decode(tokens, skipSpecialTokens: false) }).ExecuteAsync(ctx);
    }
}
