using MoeMesh.Engine.Kernels;

namespace MoeMesh.Engine.Tests.Kernels;

public sealed class KernelThreadsTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(1000)]
    public void For_RunsEveryItemOnce(int count)
    {
        var runs = new int[count];
        KernelThreads.For(count, i => Interlocked.Increment(ref runs[i]));
        Assert.All(runs, r => Assert.Equal(1, r));
    }

    /// <summary>Calls from several threads at once, and calls from inside an item, each run all their items once.</summary>
    [Fact]
    public void ConcurrentAndNestedCalls_EachRunEveryItemOnce()
    {
        const int callers = 4, count = 64;
        var runs = new int[callers, count, count];
        var threads = Enumerable.Range(0, callers).Select(c => new Thread(() =>
        {
            for (var round = 0; round < 20; round++)
                KernelThreads.For(count, i => KernelThreads.For(count, j => Interlocked.Increment(ref runs[c, i, j])));
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        foreach (var r in runs) Assert.Equal(20, r);
    }

    /// <summary>An item that throws is reported as Parallel.For reports it, after every other item has run; the next call runs normally.</summary>
    [Fact]
    public void ItemThatThrows_IsReportedAfterTheOthersRan()
    {
        var runs = new int[100];
        var error = Assert.Throws<AggregateException>(() => KernelThreads.For(100, i =>
        {
            Interlocked.Increment(ref runs[i]);
            if (i == 37) throw new InvalidOperationException("item 37");
        }));
        Assert.Equal("item 37", Assert.IsType<InvalidOperationException>(Assert.Single(error.InnerExceptions)).Message);
        Assert.All(runs, r => Assert.Equal(1, r));
        var after = 0;
        KernelThreads.For(10, _ => Interlocked.Increment(ref after));
        Assert.Equal(10, after);
    }

    /// <summary>Threads = 1 (an expert node's --threads 1) keeps every item on the calling thread.</summary>
    [Fact]
    public void OneThread_RunsEveryItemOnTheCaller()
    {
        var before = KernelThreads.Threads;
        var caller = Environment.CurrentManagedThreadId;
        var ran = new int[200];
        try
        {
            KernelThreads.Threads = 1;
            KernelThreads.For(ran.Length, i => ran[i] = Environment.CurrentManagedThreadId);
        }
        finally
        {
            KernelThreads.Threads = before;
        }
        Assert.All(ran, thread => Assert.Equal(caller, thread));
    }
}
