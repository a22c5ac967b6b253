using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests.Scheduling;

public sealed class SchedulerTests
{
    private static Sequence Seq(long id, int promptLength) => new(id, Enumerable.Range(1, promptLength).ToArray(), new SamplingParams());

    /// <summary>What the engine does after a step: mark the chunk computed and, when it sampled, append a token.</summary>
    private static void Complete(IEnumerable<ScheduledChunk> chunks)
    {
        foreach (var c in chunks)
        {
            c.Sequence.ComputedTokens += c.Length;
            if (c.Samples) c.Sequence.Append(7);
        }
    }

    [Fact]
    public void LongPrompt_IsPrefilledInChunksUnderTheTokenBudget()
    {
        var scheduler = new Scheduler(new BlockAllocator(64, 4), maxBatchTokens: 8, maxRunning: 8);
        var seq = Seq(1, 20);
        scheduler.Add(seq);
        var steps = new List<(int Start, int Length, bool Samples)>();
        for (var i = 0; i < 3; i++)
        {
            var chunks = scheduler.Schedule();
            steps.Add((chunks[0].Start, chunks[0].Length, chunks[0].Samples));
            Complete(chunks);
        }
        Assert.Equal([(0, 8, false), (8, 8, false), (16, 4, true)], steps);
        var decode = scheduler.Schedule().Single();
        Assert.Equal((20, 1, true), (decode.Start, decode.Length, decode.Samples));
    }

    [Fact]
    public void RunningDecodes_GoBeforeNewPrefills()
    {
        var scheduler = new Scheduler(new BlockAllocator(64, 4), maxBatchTokens: 6, maxRunning: 8);
        var a = Seq(1, 5);
        scheduler.Add(a);
        Complete(scheduler.Schedule());
        var b = Seq(2, 10);
        scheduler.Add(b);
        var chunks = scheduler.Schedule();
        Assert.Equal(a, chunks[0].Sequence);
        Assert.Equal(1, chunks[0].Length);
        Assert.Equal(b, chunks[1].Sequence);
        Assert.Equal(5, chunks[1].Length);
    }

    [Fact]
    public void WhenPagesRunOut_TheNewestSequenceIsPreemptedAndRecomputedLater()
    {
        var allocator = new BlockAllocator(4, 4); // 16 tokens in all
        var scheduler = new Scheduler(allocator, maxBatchTokens: 64, maxRunning: 8);
        var a = Seq(1, 8);
        var b = Seq(2, 8);
        scheduler.Add(a);
        scheduler.Add(b);
        Complete(scheduler.Schedule()); // both prefilled: 4 pages used, each has 9 tokens now
        Assert.Equal(0, allocator.FreePages);
        var chunks = scheduler.Schedule(); // a needs a 3rd page: b gives way
        Assert.Single(chunks);
        Assert.Equal(a, chunks[0].Sequence);
        Assert.Equal(SequenceStatus.Waiting, b.Status);
        Assert.Equal(0, b.ComputedTokens);
        Assert.Empty(b.BlockTable);
        Complete(chunks);
        scheduler.Finish(a, FinishReason.Stop);
        Assert.Equal(4, allocator.FreePages);
        var resumed = scheduler.Schedule().Single();
        Assert.Equal((b, 0, 9), (resumed.Sequence, resumed.Start, resumed.Length));
    }

    [Fact]
    public void MaxRunning_LimitsAdmission()
    {
        var scheduler = new Scheduler(new BlockAllocator(64, 4), maxBatchTokens: 100, maxRunning: 2);
        for (var i = 0; i < 3; i++) scheduler.Add(Seq(i, 3));
        Assert.Equal(2, scheduler.Schedule().Count);
        Assert.Equal(1, scheduler.WaitingCount);
    }

    [Fact]
    public void Finish_FreesPagesOfWaitingAndRunningSequences()
    {
        var allocator = new BlockAllocator(8, 4);
        var scheduler = new Scheduler(allocator, maxBatchTokens: 100, maxRunning: 8);
        var running = Seq(1, 6);
        var waiting = Seq(2, 3);
        scheduler.Add(running);
        Complete(scheduler.Schedule());
        scheduler.Add(waiting);
        scheduler.Finish(waiting, FinishReason.Abort);
        scheduler.Finish(running, FinishReason.Abort);
        Assert.Equal(8, allocator.FreePages);
        Assert.False(scheduler.HasWork);
        Assert.Equal(FinishReason.Abort, running.FinishReason);
    }
}
