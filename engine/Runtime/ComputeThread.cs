using System.Collections.Concurrent;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// One dedicated thread that runs a process's libtorch work in order. libtorch's CPU kernels run on an OpenMP team
/// that belongs to the thread calling them; each further thread that calls them gets a team of its own, and once
/// OpenMP manages more threads than there are cores it stops spinning between parallel regions and puts its workers
/// to sleep instead, so every small kernel pays a wake-up. On the 2-core development VM a one-sequence decode step
/// ran at 25 tokens/s from a second thread against 37-45 from the first (bench --llama-cpp keeps this visible).
/// Loading the model and every step on this one thread keeps one team.
/// </summary>
public sealed class ComputeThread : IDisposable
{
    private readonly BlockingCollection<Action> _work = new();
    private readonly Thread _thread;

    public ComputeThread(string name)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Whether the caller is this thread (work it asks for runs at once, not queued behind itself).</summary>
    public bool IsCurrent => Thread.CurrentThread == _thread;

    /// <summary>Runs <paramref name="work"/> on this thread after what is queued before it.</summary>
    public Task<T> RunAsync<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Item()
        {
            try
            {
                done.SetResult(work());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }
        if (IsCurrent) Item();
        else _work.Add(Item);
        return done.Task;
    }

    /// <summary>Runs <paramref name="work"/> on this thread and waits for it; its exception is rethrown as is.</summary>
    public T Invoke<T>(Func<T> work) => IsCurrent ? work() : RunAsync(work).GetAwaiter().GetResult();

    private void Run()
    {
        foreach (var item in _work.GetConsumingEnumerable()) item();
    }

    /// <summary>Lets the thread end once what is queued has run.</summary>
    public void Dispose() => _work.CompleteAdding();
}
