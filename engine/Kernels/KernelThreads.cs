using System.Diagnostics;

namespace MoeMesh.Engine.Kernels;

/// <summary>
/// Runs a kernel's work items across the cores with a fixed cost of a few microseconds a call. A decode step makes
/// about a hundred parallel kernel calls of 10 to 100 microseconds each; <see cref="Parallel.For(int, int, Action{int})"/>
/// wakes a thread-pool worker for each, which on the project's two-core machines cost as much as the call's work
/// (bench --parallel-calls: eight items of 3 microseconds took 47 microseconds a call, 45 on one thread, 24 here).
/// Here one worker per further core stays awake, spinning politely (yielding to other runnable threads), for
/// <see cref="SpinMicroseconds"/> after its last item, so the next call of the step finds it ready; past that it
/// sleeps until a call wakes it. The caller takes items too. A call made while another is running (a second engine
/// in the process, or a call from inside an item) goes to <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>
/// instead. Items must write disjoint outputs: which thread runs an item never changes its result.
/// </summary>
public static class KernelThreads
{
    /// <summary>How long an idle worker keeps watching for the next call before it sleeps.</summary>
    public const int SpinMicroseconds = 1000;

    private static readonly long SpinTicks = Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
    private static readonly Worker[] Workers = StartWorkers(Environment.ProcessorCount - 1);

    /// <summary>The call being run; workers read it when <see cref="_generation"/> moves.</summary>
    private static Job? _job;
    private static long _generation;

    /// <summary>1 while a caller owns the workers.</summary>
    private static int _busy;

    private static int _threads = Workers.Length + 1;
    private static bool _spin = true;

    /// <summary>
    /// Whether idle workers spin for <see cref="SpinMicroseconds"/> after a call (true, the default: a step of many
    /// short calls with little else to run) or sleep at once (a step whose libtorch ops use every core, so that no
    /// worker spins while libtorch's threads compute; set per step by LibtorchThreads.ForStep).
    /// </summary>
    public static bool Spin
    {
        get => Volatile.Read(ref _spin);
        set => Volatile.Write(ref _spin, value);
    }

    /// <summary>
    /// Threads a call runs on, the caller's included: one per core unless set lower (an expert node's --threads, when
    /// nodes share a host); clamped to 1 .. the core count.
    /// </summary>
    public static int Threads
    {
        get => Volatile.Read(ref _threads);
        set => Volatile.Write(ref _threads, Math.Clamp(value, 1, Workers.Length + 1));
    }

    /// <summary>Runs <paramref name="body"/>(0 .. <paramref name="count"/> - 1), each item once, and returns when all are done.</summary>
    /// <exception cref="AggregateException">An item threw (as <see cref="Parallel.For(int, int, Action{int})"/> reports it).</exception>
    public static void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        if (count == 1)
        {
            body(0);
            return;
        }
        var threads = Threads;
        if (threads == 1)
        {
            for (var i = 0; i < count; i++) body(i);
            return;
        }
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
            return;
        }
        var job = new Job(body, count, threads - 1);
        try
        {
            Volatile.Write(ref _job, job);
            Interlocked.Increment(ref _generation);
            for (var w = 0; w < job.Helpers; w++) Workers[w].Wake();
            job.RunItems();
            for (var spins = 1; Volatile.Read(ref job.Remaining) > 0; spins++) Pause(spins);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
        if (job.Error is { } error) throw new AggregateException(error);
    }

    /// <summary>
    /// One round of a wait loop: a few pause instructions, so that the change is seen within a fraction of a
    /// microsecond (<see cref="SpinWait"/> backs off to pauses of tens of microseconds), and every 64th round a yield
    /// to any other thread waiting for this core.
    /// </summary>
    private static void Pause(int spins)
    {
        if ((spins & 63) == 0) Thread.Yield();
        else Thread.SpinWait(4);
    }

    private static Worker[] StartWorkers(int count)
    {
        var workers = new Worker[Math.Max(0, count)];
        for (var i = 0; i < workers.Length; i++) workers[i] = new Worker(i);
        return workers;
    }

    /// <summary>
    /// One call: its items are claimed by index, and <see cref="Remaining"/> counts those not yet finished; workers
    /// from index <see cref="Helpers"/> on leave it alone.
    /// </summary>
    private sealed class Job(Action<int> body, int count, int helpers)
    {
        public readonly int Helpers = helpers;
        private readonly int _count = count;
        private int _next = -1;
        public int Remaining = count;
        public Exception? Error;

        /// <summary>
        /// Claims and runs items until none is left, then counts them off <see cref="Remaining"/> at once: one write
        /// of that shared line per thread and call rather than per item.
        /// </summary>
        public void RunItems()
        {
            int i, done = 0;
            while ((i = Interlocked.Increment(ref _next)) < _count)
            {
                try
                {
                    body(i);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref Error, e, null);
                }
                done++;
            }
            if (done > 0) Interlocked.Add(ref Remaining, -done);
        }
    }

    /// <summary>A background thread that runs the items of each call it sees.</summary>
    private sealed class Worker
    {
        private readonly SemaphoreSlim _signal = new(0);

        /// <summary>1 while the worker sleeps, or is about to, on <see cref="_signal"/>.</summary>
        private int _sleeping;

        private readonly int _index;

        public Worker(int index)
        {
            _index = index;
            var thread = new Thread(Loop) { IsBackground = true, Name = $"kernel worker {index}" };
            thread.Start();
        }

        /// <summary>Releases the worker if it sleeps; a spinning one sees the new generation by itself.</summary>
        public void Wake()
        {
            if (Interlocked.Exchange(ref _sleeping, 0) == 1) _signal.Release();
        }

        private void Loop()
        {
            var seen = Volatile.Read(ref _generation);
            while (true)
            {
                var start = Stopwatch.GetTimestamp();
                var spins = 0;
                long now;
                while ((now = Volatile.Read(ref _generation)) == seen)
                {
                    if (Spin && Stopwatch.GetTimestamp() - start < SpinTicks)
                    {
                        Pause(++spins);
                        continue;
                    }
                    Interlocked.Exchange(ref _sleeping, 1);
                    if (Volatile.Read(ref _generation) != seen)
                    {
                        // A call came in meanwhile: if its caller already released the signal, take that release back.
                        if (Interlocked.Exchange(ref _sleeping, 0) == 0) _signal.Wait();
                        continue;
                    }
                    _signal.Wait();
                    start = Stopwatch.GetTimestamp();
                }
                seen = now;
                if (Volatile.Read(ref _job) is { } job && _index < job.Helpers) job.RunItems();
            }
        }
    }
}
