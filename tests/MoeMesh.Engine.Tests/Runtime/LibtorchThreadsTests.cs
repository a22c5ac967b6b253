using MoeMesh.Engine.Runtime;

namespace MoeMesh.Engine.Tests.Runtime;

public sealed class LibtorchThreadsTests
{
    /// <summary>
    /// Once the engine's module is loaded (any test here has loaded it), the native environment libgomp reads has
    /// OpenMP's passive wait policy, unless the process started with a policy or spin count of its own, which stay.
    /// The starting environment is read from /proc, which setenv does not change.
    /// </summary>
    [Fact]
    public void EngineModule_SetsThePassiveWaitPolicy_UnlessTheUserChoseOne()
    {
        Assert.True(OperatingSystem.IsLinux());
        var initial = File.ReadAllText("/proc/self/environ").Split('\0')
            .Select(e => e.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
        var expected = initial.GetValueOrDefault("OMP_WAIT_POLICY")
            ?? (initial.ContainsKey("GOMP_SPINCOUNT") ? null : LibtorchThreads.WaitPolicy);
        Assert.Equal(expected, LibtorchThreads.NativeEnvironment("OMP_WAIT_POLICY"));
    }
}
