using Microsoft.Extensions.DependencyInjection;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Tests.Serving;

/// <summary>
/// Holds a gateway's engine loop before chosen steps until the test releases it, so that a test decides what
/// happens between two steps instead of racing the loop; it can also make the loop fail.
/// </summary>
internal sealed class LoopHold : IDisposable
{
    private readonly EngineLoop _loop;
    private readonly HashSet<int> _holdBefore;
    private readonly SemaphoreSlim _reached = new(0);
    private readonly SemaphoreSlim _go = new(0);
    private volatile Exception? _failure;
    private int _steps;

    /// <param name="holdBefore">Step numbers (from 1) before which the loop waits for <see cref="Release"/>.</param>
    public LoopHold(GatewayServer server, params int[] holdBefore)
    {
        _loop = server.App.Services.GetRequiredService<EngineLoop>();
        _holdBefore = [.. holdBefore];
        _loop.BeforeStep = Before;
    }

    public EngineLoop Loop => _loop;

    /// <summary>Steps the loop has started.</summary>
    public int Steps => Volatile.Read(ref _steps);

    private void Before()
    {
        if (_failure is { } e) throw e;
        var step = Interlocked.Increment(ref _steps);
        if (!_holdBefore.Contains(step)) return;
        _reached.Release();
        _go.Wait();
        if (_failure is { } late) throw late;
    }

    /// <summary>Waits until the loop is held before the next of its hold steps.</summary>
    public async Task ReachedAsync()
    {
        if (!await _reached.WaitAsync(Eventually.DefaultTimeout)) throw new TimeoutException("the engine loop never reached the held step");
    }

    public void Release() => _go.Release();

    /// <summary>The loop fails before its next step (or as soon as a held step is released).</summary>
    public void FailWith(Exception e) => _failure = e;

    public void Dispose()
    {
        _loop.BeforeStep = null;
        _go.Release(_holdBefore.Count);
    }
}
