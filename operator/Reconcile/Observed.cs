namespace MoeMesh.Operator.Reconcile;

/// <summary>What the operator saw of the children in one reconcile: the inputs of the status.</summary>
public sealed record Observed(int GatewaysReady, int ExpertNodesReady, IReadOnlyList<int> ReadyExpertOrdinals, string? Problem = null);
