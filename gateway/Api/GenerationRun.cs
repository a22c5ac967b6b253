using System.Threading.Channels;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Api;

/// <summary>
/// The choices of one request in flight: submits them, merges their events in arrival order and aborts
/// every unfinished one when the client goes away or the handler leaves early, whatever the point.
/// </summary>
public sealed class GenerationRun(EngineLoop loop, IReadOnlyList<Choice> choices, CancellationToken clientGone) : IDisposable
{
    private CancellationTokenRegistration _abortOnDisconnect;
    private bool _submitted;

    public IReadOnlyList<Choice> Choices => choices;

    /// <summary>Submits every choice; maps a full queue to 429 and shutdown to 503.</summary>
    public void Submit()
    {
        try
        {
            loop.Submit(choices.Select(c => c.Handle).ToList());
        }
        catch (QueueFullException e)
        {
            throw new ApiException(429, e.Message, type: "rate_limit_error", code: "queue_full");
        }
        catch (ServiceStoppingException e)
        {
            throw new ApiException(503, e.Message, type: "server_error", code: "service_unavailable");
        }
        _submitted = true;
        _abortOnDisconnect = clientGone.Register(AbortUnfinished);
    }

    /// <summary>Yields (choice, event) pairs until every choice has finished.</summary>
    public async IAsyncEnumerable<(Choice Choice, GenerationEvent Event)> Events()
    {
        // One choice (the usual n=1) is read from its own channel: no merge, one thread hop less per token.
        var source = choices.Count == 1 ? Single(choices[0]) : Merged();
        await foreach (var item in source)
        {
            item.Choice.Add(item.Event);
            yield return item;
        }
    }

    private static async IAsyncEnumerable<(Choice Choice, GenerationEvent Event)> Single(Choice c)
    {
        await foreach (var e in c.Handle.Events.ReadAllAsync(CancellationToken.None)) yield return (c, e);
    }

    /// <summary>The events of every choice in arrival order.</summary>
    private IAsyncEnumerable<(Choice Choice, GenerationEvent Event)> Merged()
    {
        var merged = Channel.CreateUnbounded<(Choice, GenerationEvent)>();
        var pumps = choices.Select(async c =>
        {
            await foreach (var e in c.Handle.Events.ReadAllAsync(CancellationToken.None)) merged.Writer.TryWrite((c, e));
        }).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(_ => merged.Writer.TryComplete(), TaskScheduler.Default);
        return merged.Reader.ReadAllAsync(CancellationToken.None);
    }

    /// <summary>Runs to the end; a choice that failed becomes a 503 (a dependency is down) or a 500.</summary>
    public async Task CompleteAsync()
    {
        await foreach (var _ in Events()) { }
        if (choices.FirstOrDefault(c => c.Finish == FinishReason.Unavailable) is { } unavailable)
            throw new ApiException(503, $"generation failed: {unavailable.Error}", type: "server_error", code: "experts_unavailable");
        // Ended by a shutdown: another replica can serve it.
        if (choices.FirstOrDefault(c => c.Finish == FinishReason.Abort && c.Error is not null) is { } stopped)
            throw new ApiException(503, stopped.Error!, type: "server_error", code: "service_unavailable");
        if (choices.FirstOrDefault(c => c.Error is not null) is { } failed)
            throw new ApiException(500, $"generation failed: {failed.Error}", type: "server_error", code: "internal_error");
    }

    private void AbortUnfinished()
    {
        foreach (var c in choices)
            if (c.Finish is null) loop.Abort(c.Handle);
    }

    /// <summary>Stops listening for the client and aborts what has not finished (the handler left early).</summary>
    public void Dispose()
    {
        _abortOnDisconnect.Dispose();
        // A refused request (429, 503) has nothing in the loop to abort.
        if (_submitted) AbortUnfinished();
    }
}
