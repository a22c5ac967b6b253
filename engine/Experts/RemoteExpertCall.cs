using MoeMesh.Engine.Dispatch;
using MoeMesh.Engine.Model;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Experts;

/// <summary>
/// One layer's dispatch in flight. The (token, expert) pairs are grouped per node; each node gets its
/// tokens once with every pair it must compute. Failed nodes are excluded and their pairs re-planned
/// onto other replicas until every pair is done or some expert has no node left.
/// </summary>
internal sealed class RemoteExpertCall : IExpertCall
{
    private sealed record NodeCall(string Node, int[] Pairs, int[] Rows, Task<byte[]> Reply);

    private readonly IExpertRouter _router;
    private readonly Action<TimeSpan> _waited;
    private readonly ComputeOptions _options;
    private readonly int _layer;
    private readonly int _tokens;
    private readonly int _hidden;
    private readonly int _k;
    private readonly WireDType _dtype;
    private readonly byte[] _states;
    private readonly long[] _experts;
    private readonly float[] _weights;
    private readonly HashSet<string> _excluded = [];
    private List<NodeCall> _inFlight = [];
    private string _lastError = "";

    private RemoteExpertCall(IExpertRouter router, ComputeOptions options, int layer, Tensor hidden, Tensor expertIds, Tensor weights, Action<TimeSpan> waited)
    {
        _router = router;
        _waited = waited;
        _options = options;
        _layer = layer;
        _tokens = (int)hidden.shape[0];
        _hidden = (int)hidden.shape[1];
        _k = (int)expertIds.shape[1];
        _dtype = WireTensors.DTypeOf(options);
        _states = WireTensors.ToBytes(hidden);
        using var ids = expertIds.cpu();
        _experts = ids.data<long>().ToArray();
        using var w = weights.to(ScalarType.Float32).cpu();
        _weights = w.data<float>().ToArray();
    }

    public static RemoteExpertCall Start(IExpertRouter router, ComputeOptions options, int layer, Tensor hidden, Tensor expertIds, Tensor weights, Action<TimeSpan> waited,
        ExpertLoad? load = null)
    {
        var call = new RemoteExpertCall(router, options, layer, hidden, expertIds, weights, waited);
        load?.Record(layer, call._experts);
        call._inFlight = call.Send(Enumerable.Range(0, call._experts.Length));
        return call;
    }

    public Tensor Complete()
    {
        var done = new List<(NodeCall Call, byte[] Reply)>();
        while (_inFlight.Count > 0)
        {
            var retry = new List<int>();
            var waitStarted = System.Diagnostics.Stopwatch.GetTimestamp();
            // Failures surface below, call by call; this only waits for every reply to land.
            Task.WhenAll(_inFlight.Select(c => c.Reply)).ContinueWith(_ => { }, TaskScheduler.Default).Wait();
            _waited(System.Diagnostics.Stopwatch.GetElapsedTime(waitStarted));
            foreach (var call in _inFlight)
            {
                try
                {
                    var reply = call.Reply.GetAwaiter().GetResult();
                    var expected = (long)call.Rows.Length * _hidden * DispatchRequest.ElementSize(_dtype);
                    if (reply.Length != expected) throw new ExpertNodeException(call.Node, $"reply of {reply.Length} bytes, expected {expected}");
                    done.Add((call, reply));
                }
                catch (ExpertNodeException e)
                {
                    _excluded.Add(call.Node);
                    _lastError = e.Message;
                    retry.AddRange(call.Pairs);
                }
            }
            _inFlight = retry.Count > 0 ? Send(retry) : [];
        }
        return Combine(done);
    }

    /// <summary>Adds the node partials per token; nodes in ascending order of their lowest expert, as the in-process sum runs.</summary>
    private Tensor Combine(List<(NodeCall Call, byte[] Reply)> done)
    {
        using var scope = NewDisposeScope();
        var device = _options.Device;
        var output = zeros([_tokens, _hidden], _options.DType, device);
        foreach (var (call, reply) in done.OrderBy(d => d.Call.Pairs.Min(p => _experts[p])))
        {
            var partial = WireTensors.FromBytes(reply, call.Rows.Length, _hidden, _dtype, device).to(_options.DType);
            output.index_add_(0, tensor(call.Rows.Select(r => (long)r).ToArray(), device: device), partial, Scalars.One);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Assigns the pairs to nodes (one pick per expert) and sends one message per node.</summary>
    private List<NodeCall> Send(IEnumerable<int> pairs)
    {
        var nodeOf = new Dictionary<long, string?>();
        var byNode = new Dictionary<string, List<int>>();
        var planned = new Dictionary<string, int>();
        var unavailable = new List<int>();
        foreach (var p in pairs)
        {
            var expert = _experts[p];
            if (!nodeOf.TryGetValue(expert, out var node)) nodeOf[expert] = node = _router.Pick(_layer, (int)expert, _excluded, planned);
            if (node is null)
            {
                unavailable.Add(p);
                continue;
            }
            (byNode.TryGetValue(node, out var list) ? list : byNode[node] = []).Add(p);
            planned[node] = byNode[node].Count;
        }
        if (unavailable.Count > 0)
        {
            // The step fails for the tokens that need these experts; the messages already in flight are dropped.
            foreach (var call in _inFlight) _ = call.Reply.ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted);
            throw new ExpertsUnavailableException(_layer,
                unavailable.Select(p => (int)_experts[p]).Distinct().Order().ToList(),
                unavailable.Select(p => p / _k).Distinct().Order().ToList(),
                _lastError.Length > 0 ? _lastError : "none is registered");
        }
        return byNode.Select(kv => SendTo(kv.Key, kv.Value)).ToList();
    }

    private NodeCall SendTo(string node, List<int> pairs)
    {
        var rows = pairs.Select(p => p / _k).Distinct().Order().ToArray();
        var local = new Dictionary<int, int>(rows.Length);
        for (var i = 0; i < rows.Length; i++) local[rows[i]] = i;
        var rowBytes = _hidden * DispatchRequest.ElementSize(_dtype);
        var states = new byte[rows.Length * rowBytes];
        for (var i = 0; i < rows.Length; i++) _states.AsSpan(rows[i] * rowBytes, rowBytes).CopyTo(states.AsSpan(i * rowBytes));
        var message = DispatchCodec.Encode(new DispatchRequest(
            _router.Fingerprint, _layer, rows.Length, _hidden, _dtype,
            pairs.Select(p => local[p / _k]).ToArray(),
            pairs.Select(p => (int)_experts[p]).ToArray(),
            pairs.Select(p => _weights[p]).ToArray(),
            states));
        return new NodeCall(node, pairs.ToArray(), rows, _router.SendAsync(node, _layer, message));
    }
}
