using MoeMesh.Operator.Placement;

namespace MoeMesh.Operator.Tests.Placement;

/// <summary>Make-before-break phases: the union first, then the target; a phase that changes nothing is not written.</summary>
public sealed class RolloutTests
{
    private static ModelPlacement Of(params int[][] nodes) => new(new SortedDictionary<int, LayerPlan> { [1] = new LayerPlan(nodes) });

    [Fact]
    public void AMove_IsTwoPhases_AddFirstThenDrop()
    {
        var steps = Rollout.Steps(Of([0, 1], [2, 3]), Of([0], [1, 2, 3]));
        Assert.Equal(2, steps.Count);
        Assert.Equal(["0,1", "1,2,3"], steps[0].Nodes.Select(n => n["1"]));
        Assert.Equal(["0", "1,2,3"], steps[1].Nodes.Select(n => n["1"]));
    }

    [Fact]
    public void OnlyAdding_OrOnlyDropping_IsOnePhase_AndNothingIsNone()
    {
        Assert.Single(Rollout.Steps(Of([0, 1], [2, 3]), Of([0, 1, 2], [2, 3])));
        Assert.Single(Rollout.Steps(Of([0, 1, 2], [2, 3]), Of([0, 1], [2, 3])));
        Assert.Empty(Rollout.Steps(Of([0, 1], [2, 3]), Of([0, 1], [2, 3])));
    }
}
