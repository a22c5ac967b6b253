using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace MoeMesh.Gateway.Routing;

/// <summary>
/// YARP load-balancing policy for expert replicas: the destination with the least work, counting the
/// dispatches in flight plus the pairs the current plan already gave it (an <see cref="PlannedWork"/>
/// item on the context), so that one layer's experts spread over their replicas. Ties go round: an expert's
/// holders share its tokens over successive steps even when nothing is in flight (sequential traffic), which
/// is what the placement planner's redundant copies assume.
/// </summary>
public sealed class LeastOutstandingWorkPolicy : ILoadBalancingPolicy
{
    public const string PolicyName = "MoeMeshLeastOutstandingWork";
    public static readonly object PlannedWork = new();

    public string Name => PolicyName;

    private int _turn;

    public DestinationState? PickDestination(HttpContext context, ClusterState cluster, IReadOnlyList<DestinationState> availableDestinations)
    {
        var planned = context.Items.TryGetValue(PlannedWork, out var p) ? p as IReadOnlyDictionary<string, int> : null;
        DestinationState? best = null;
        var bestWork = int.MaxValue;
        var count = availableDestinations.Count;
        var start = count == 0 ? 0 : (int)((uint)Interlocked.Increment(ref _turn) % (uint)count);
        for (var i = 0; i < count; i++)
        {
            var d = availableDestinations[(start + i) % count];
            var work = d.ConcurrentRequestCount + (planned?.GetValueOrDefault(d.DestinationId) ?? 0);
            if (work < bestWork)
            {
                best = d;
                bestWork = work;
            }
        }
        return best;
    }
}
