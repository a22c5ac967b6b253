namespace MoeMesh.Testing;

/// <summary>
/// The tests' one polling helper: waits for a condition on the system under test, never for a span of
/// time, and fails with what it last saw when the condition does not hold within a generous bound.
/// </summary>
public static class Eventually
{
    /// <summary>Long enough for a loaded 2-core machine; a condition that holds returns as soon as it holds.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(90);

    /// <summary>Probes until <paramref name="done"/> holds for the probed value and returns that value; throws <see cref="TimeoutException"/> otherwise.</summary>
    public static async Task<T> HoldsAsync<T>(Func<Task<T>> probe, Func<T, bool> done, string what, TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var deadline = DateTime.UtcNow + limit;
        while (true)
        {
            var value = await probe();
            if (done(value)) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what}: not seen within {limit.TotalSeconds:0} s; last seen: {value}");
            await Task.Delay(20);
        }
    }

    /// <summary>Probes until it returns true.</summary>
    public static Task HoldsAsync(Func<Task<bool>> probe, string what, TimeSpan? timeout = null) =>
        HoldsAsync(probe, ok => ok, what, timeout);
}
