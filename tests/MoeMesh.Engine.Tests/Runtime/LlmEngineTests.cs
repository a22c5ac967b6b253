using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;

namespace MoeMesh.Engine.Tests.Runtime;

public sealed class LlmEngineTests
{
    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(int.MaxValue - 2)]
    [InlineData(0)]
    public void MaxTokensPastTheContext_IsRefused_EvenNearIntMax(int maxTokens)
    {
        var engine = new LlmEngine(TestModels.Load(TestModels.V3Dir), new EngineOptions { KvCacheBytes = 4 << 20 }, null, null);
        var e = Assert.Throws<ArgumentException>(() => engine.Add([1, 2, 3], new SamplingParams { MaxTokens = maxTokens }));
        Assert.Contains("max_tokens", e.Message);
        Assert.False(engine.HasWork);
    }
}
