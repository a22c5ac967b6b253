using System.Threading.Channels;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Gateway.Serving;

/// <summary>A sequence submitted to the engine loop and the channel its events arrive on.</summary>
public sealed class GenerationHandle(IReadOnlyList<int> prompt, SamplingParams sampling)
{
    private readonly Channel<GenerationEvent> _events = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    public IReadOnlyList<int> Prompt { get; } = prompt;
    public SamplingParams Sampling { get; } = sampling;

    /// <summary>Set by the loop once the engine accepted it.</summary>
    public Sequence? Sequence { get; internal set; }
    public long SubmittedAt { get; } = System.Diagnostics.Stopwatch.GetTimestamp();
    internal long LastTokenAt { get; set; }
    internal int Tokens { get; set; }

    /// <summary>Pages of the prompt found in the shared store, imported when the loop takes the handle.</summary>
    internal ImportedPrefix? Imported { get; set; }

    /// <summary>The client went away: the loop ends the sequence, or never starts it.</summary>
    internal volatile bool AbortRequested;

    public ChannelReader<GenerationEvent> Events => _events.Reader;

    internal void Publish(GenerationEvent e)
    {
        _events.Writer.TryWrite(e);
        if (e.Finish is not null) _events.Writer.TryComplete();
    }
}
