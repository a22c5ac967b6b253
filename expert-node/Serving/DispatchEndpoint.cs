using System.Diagnostics;
using Microsoft.AspNetCore.Http.Features;
using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Experts;
using static TorchSharp.torch;

namespace MoeMesh.ExpertNode.Serving;

/// <summary>
/// POST /v1/dispatch: one layer's tokens for this node's experts, in the binary wire format; replies
/// with one combined vector per token. Refusals are JSON errors whose code tells the gateway what to
/// do: model_mismatch (409, wrong checkpoint), expert_not_held (421, refresh holdings and go
/// elsewhere), malformed_dispatch (400), loading (503).
/// </summary>
public sealed class DispatchEndpoint(ExpertHoldings holdings, NodeOptions options, NodeMetrics metrics)
{
    public async Task HandleAsync(HttpContext ctx)
    {
        var limit = options.MaxDispatchBytes;
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature) feature.MaxRequestBodySize = limit;
        ReadOnlyMemory<byte> body;
        try
        {
            body = await BoundedBody.ReadAsync(ctx.Request.Body, ctx.Request.ContentLength, limit, ctx.RequestAborted);
        }
        catch (BodyTooLargeException e)
        {
            await RefuseAsync(ctx, 413, "dispatch_too_large", e.Message);
            return;
        }
        catch (InvalidDataException e)
        {
            await RefuseAsync(ctx, 400, "malformed_dispatch", e.Message);
            return;
        }
        catch (BadHttpRequestException e)
        {
            await RefuseAsync(ctx, e.StatusCode == 413 ? 413 : 400, e.StatusCode == 413 ? "dispatch_too_large" : "malformed_dispatch", "the body could not be read");
            return;
        }
        // The generation is taken once the body is in: a slow client never holds experts back from being freed.
        if (holdings.Acquire() is not { } served)
        {
            await RefuseAsync(ctx, 503, "loading", "the node is still loading its experts");
            return;
        }
        byte[]? reply;
        try
        {
            reply = await ComputeAsync(ctx, body, served.Backend);
        }
        finally
        {
            // Released before the reply is written: a slow reader does not keep dropped experts alive.
            holdings.Release(served);
        }
        if (reply is null) return;
        ctx.Response.ContentType = DispatchCodec.ContentType;
        ctx.Response.ContentLength = reply.Length;
        await ctx.Response.Body.WriteAsync(reply, ctx.RequestAborted);
    }

    /// <summary>The combined output of a well-formed dispatch for experts held here; null after refusing it.</summary>
    private async Task<byte[]?> ComputeAsync(HttpContext ctx, ReadOnlyMemory<byte> body, LocalExpertBackend backend)
    {
        DispatchRequest request;
        try
        {
            request = DispatchCodec.Decode(body);
        }
        catch (DispatchFormatException e)
        {
            await RefuseAsync(ctx, 400, "malformed_dispatch", e.Message);
            return null;
        }
        if (Check(request, backend) is { } refusal)
        {
            await RefuseAsync(ctx, refusal.Status, refusal.Code, refusal.Message);
            return null;
        }

        var queued = Stopwatch.GetTimestamp();
        // One dispatch at a time (libtorch already spreads each over the cores), in arrival order on the node's compute
        // thread; a dispatch whose caller has gone is skipped when its turn comes.
        var reply = await holdings.Compute.RunAsync(() =>
        {
            if (ctx.RequestAborted.IsCancellationRequested) return null;
            var started = Stopwatch.GetTimestamp();
            metrics.QueueSeconds.Observe(Stopwatch.GetElapsedTime(queued, started).TotalSeconds);
            var bytes = Compute(backend, request);
            metrics.ComputeSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            return bytes;
        });
        if (reply is null) return null;
        metrics.BatchTokens.Observe(request.TokenCount);
        foreach (var e in request.PairExperts) metrics.ExpertTokens.WithLabels(request.Layer.ToString(), e.ToString()).Inc();
        return reply;
    }

    private (int Status, string Code, string Message)? Check(DispatchRequest r, LocalExpertBackend backend)
    {
        if (r.Fingerprint != holdings.Fingerprint)
            return (409, "model_mismatch", $"this node serves model {holdings.Fingerprint}, the message is for {r.Fingerprint}");
        if (r.Hidden != holdings.Config.HiddenSize)
            return (400, "malformed_dispatch", $"hidden size {r.Hidden} does not match the model's {holdings.Config.HiddenSize}");
        if (r.TokenCount > options.MaxDispatchTokens)
            return (413, "dispatch_too_large", $"{r.TokenCount} tokens in one dispatch; this node takes at most {options.MaxDispatchTokens} (--max-dispatch-tokens)");
        if (r.PairCount > (long)r.TokenCount * holdings.Config.NumExpertsPerTok)
            return (400, "malformed_dispatch", $"{r.PairCount} pairs for {r.TokenCount} tokens; a token chooses at most {holdings.Config.NumExpertsPerTok} experts");
        foreach (var e in r.PairExperts.Distinct())
        {
            if (!backend.Holds(r.Layer, e))
                return (421, "expert_not_held", $"expert {e} of layer {r.Layer} is not held by this node");
        }
        var seen = new HashSet<(int, int)>();
        for (var i = 0; i < r.PairCount; i++)
        {
            if (!seen.Add((r.PairTokens[i], r.PairExperts[i])))
                return (400, "malformed_dispatch", $"token {r.PairTokens[i]} names expert {r.PairExperts[i]} twice");
        }
        return null;
    }

    private byte[] Compute(LocalExpertBackend backend, DispatchRequest r)
    {
        using var scope = NewDisposeScope();
        var device = options.Compute.Device;
        var states = WireTensors.FromBytes(r.States.Span, r.TokenCount, r.Hidden, r.DType, device).to(options.Compute.DType);
        var tokens = tensor(r.PairTokens.Select(t => (long)t).ToArray(), device: device);
        var experts = tensor(r.PairExperts.Select(e => (long)e).ToArray(), device: device);
        var weights = tensor(r.PairWeights, device: device);
        var output = backend.ComputePairs(r.Layer, states, tokens, experts, weights);
        return WireTensors.ToBytes(output.to(WireTensors.ScalarTypeOf(r.DType)));
    }

    private async Task RefuseAsync(HttpContext ctx, int status, string code, string message)
    {
        metrics.Rejected.WithLabels(code).Inc();
        await NodeError.Result(status, code, message).ExecuteAsync(ctx);
    }
}
