namespace MoeMesh.Operator.Placement;

/// <summary>The planner's bounds: node count, expert slots per node, the holders every expert keeps.</summary>
public sealed record PlannerShape(int Nodes, int SlotsPerNode, int MinReplicas)
{
    public void Check(int experts)
    {
        if (Nodes < 1 || SlotsPerNode < 1 || MinReplicas < 1) throw new ArgumentException("nodes, slots per node and minimum replicas must be positive");
        if (MinReplicas > Nodes) throw new ArgumentException($"{MinReplicas} holders per expert need at least as many nodes (have {Nodes})");
        if ((long)experts * MinReplicas > (long)Nodes * SlotsPerNode)
            throw new ArgumentException($"{experts} experts x {MinReplicas} holders do not fit in {Nodes} nodes x {SlotsPerNode} slots");
    }
}

/// <summary>How much one round may move, and when it is not worth it.</summary>
public sealed record MigrationBudget(int MaxMoves, double TargetImbalance = 1.02, double MinGain = 0.01);

/// <summary>
/// Expert placement in the spirit of DeepSeek's EPLB (global policy): hot experts get redundant holders (an
/// expert's next holder goes where load per holder is highest), then the copies are packed onto nodes, heaviest
/// first, each to the least-loaded node with a free slot that does not hold it yet. Beyond EPLB, which re-plans
/// from scratch and ignores the cost of moving weights, <see cref="Rebalance"/> starts from the placement in
/// force and changes it by the moves that cut the hottest node's load most per expert copy loaded, within a
/// budget, and not at all when the gain is too small. Deterministic: ties go to the lower index.
/// </summary>
public static class ExpertPlanner
{
    /// <summary>A fresh plan for one layer's loads (what EPLB computes).</summary>
    public static LayerPlan Fresh(IReadOnlyList<double> load, PlannerShape shape)
    {
        var experts = load.Count;
        shape.Check(experts);
        var counts = Enumerable.Repeat(shape.MinReplicas, experts).ToArray();
        // Every slot holds a copy: the spare ones go, one by one, to the expert with the most load per holder.
        var queue = new PriorityQueue<int, (double, int)>();
        for (var e = 0; e < experts; e++) queue.Enqueue(e, (-load[e] / counts[e], e));
        for (var spare = shape.Nodes * shape.SlotsPerNode - experts * shape.MinReplicas; spare > 0 && queue.Count > 0; spare--)
        {
            var e = queue.Dequeue();
            counts[e]++;
            if (counts[e] < shape.Nodes) queue.Enqueue(e, (-load[e] / counts[e], e));
        }
        var copies = Enumerable.Range(0, experts).SelectMany(e => Enumerable.Repeat(e, counts[e]))
            .OrderByDescending(e => load[e] / counts[e]).ThenBy(e => e).ToArray();
        var nodes = Enumerable.Range(0, shape.Nodes).Select(_ => new SortedSet<int>()).ToArray();
        var nodeLoad = new double[shape.Nodes];
        foreach (var e in copies)
        {
            var target = -1;
            for (var n = 0; n < shape.Nodes; n++)
                if (nodes[n].Count < shape.SlotsPerNode && !nodes[n].Contains(e) && (target < 0 || nodeLoad[n] < nodeLoad[target])) target = n;
            if (target < 0) target = MakeRoom(nodes, e, shape.SlotsPerNode);
            if (target < 0) continue; // every node with room holds it already: one copy fewer
            nodes[target].Add(e);
            nodeLoad[target] += load[e] / counts[e];
        }
        return new LayerPlan(nodes);
    }

    /// <summary>
    /// A node for another copy of <paramref name="e"/> when every node with a free slot holds it: a node without it
    /// hands one of its experts to a node with room that lacks that one. -1 when there is none.
    /// </summary>
    private static int MakeRoom(SortedSet<int>[] nodes, int e, int slots)
    {
        for (var full = 0; full < nodes.Length; full++)
        {
            if (nodes[full].Contains(e)) continue;
            for (var free = 0; free < nodes.Length; free++)
            {
                if (nodes[free].Count >= slots) continue;
                var give = nodes[full].FirstOrDefault(x => !nodes[free].Contains(x), -1);
                if (give < 0) continue;
                nodes[full].Remove(give);
                nodes[free].Add(give);
                return full;
            }
        }
        return -1;
    }

    /// <summary>
    /// The placement in force, improved within <paramref name="budget"/>: first whatever coverage needs (every
    /// expert gets its minimum holders, nodes beyond the count are emptied), then the moves that lower the
    /// hottest node's load most per copy loaded, until the imbalance reaches the target, the budget is spent or
    /// no move helps. Returns <paramref name="current"/> itself when the balancing gain is below the minimum.
    /// </summary>
    public static LayerPlan Rebalance(IReadOnlyList<double> load, LayerPlan current, PlannerShape shape, MigrationBudget budget)
    {
        var experts = load.Count;
        shape.Check(experts);
        var state = new State(load, shape, Enumerable.Range(0, shape.Nodes).Select(n => n < current.NodeCount ? current.Nodes[n] : []));
        var required = state.Repair();
        var before = state.Imbalance();
        var moves = 0;
        while (state.Imbalance() > budget.TargetImbalance && moves < budget.MaxMoves)
        {
            var step = state.BestStep(budget.MaxMoves - moves, budget.TargetImbalance);
            if (step is null) break;
            moves += state.Apply(step.Value);
        }
        var plan = state.ToPlan();
        return required == 0 && before - state.Imbalance() < budget.MinGain ? current : plan;
    }

    /// <summary>Fresh plans for every layer (layers in parallel; the result does not depend on it).</summary>
    public static LayerPlan[] Fresh(IReadOnlyList<IReadOnlyList<double>> loads, PlannerShape shape)
    {
        var plans = new LayerPlan[loads.Count];
        Parallel.For(0, loads.Count, l => plans[l] = Fresh(loads[l], shape));
        return plans;
    }

    /// <summary>
    /// Every layer rebalanced from the placement in force; the round's budget of copies is shared equally by the
    /// layers (layers in parallel; the result does not depend on it).
    /// </summary>
    public static LayerPlan[] Rebalance(IReadOnlyList<IReadOnlyList<double>> loads, IReadOnlyList<LayerPlan> current, PlannerShape shape, MigrationBudget round)
    {
        if (current.Count != loads.Count) throw new ArgumentException($"{loads.Count} layers of load but {current.Count} of placement");
        var perLayer = round with { MaxMoves = round.MaxMoves / Math.Max(loads.Count, 1) };
        var plans = new LayerPlan[loads.Count];
        Parallel.For(0, loads.Count, l => plans[l] = Rebalance(loads[l], current[l], shape, perLayer));
        return plans;
    }

    /// <summary>
    /// One change: drop expert Drop from node From (unless -1), add expert Add on node To (unless -1); or, with
    /// Swap set, exchange Drop on From with Swap on To.
    /// </summary>
    private readonly record struct Step(int From, int Drop, int To, int Add, int Cost)
    {
        public int Swap { get; init; } = -1;
    }

    private sealed class State
    {
        private readonly IReadOnlyList<double> _load;
        private readonly PlannerShape _shape;
        private readonly SortedSet<int>[] _nodes;
        private readonly int[] _counts;
        private readonly double[] _nodeLoad;
        private readonly List<int>[] _holders;
        private readonly bool[] _has;
        private readonly int[] _stamp;
        private int[] _byLoad = [];
        private int _version;

        public State(IReadOnlyList<double> load, PlannerShape shape, IEnumerable<IEnumerable<int>> nodes)
        {
            _load = load;
            _shape = shape;
            _nodes = nodes.Select(n => new SortedSet<int>(n.Where(e => e >= 0 && e < load.Count))).ToArray();
            _counts = new int[load.Count];
            foreach (var n in _nodes) foreach (var e in n) _counts[e]++;
            _nodeLoad = new double[_nodes.Length];
            _holders = Enumerable.Range(0, load.Count).Select(_ => new List<int>()).ToArray();
            _has = new bool[_nodes.Length * load.Count];
            _stamp = new int[_nodes.Length];
            Recompute();
        }

        public LayerPlan ToPlan() => new(_nodes);

        public double Imbalance()
        {
            var mean = _nodeLoad.Average();
            return mean <= 0 ? 1 : _nodeLoad.Max() / mean;
        }

        private void Recompute()
        {
            foreach (var h in _holders) h.Clear();
            Array.Clear(_has);
            for (var n = 0; n < _nodes.Length; n++)
            {
                _nodeLoad[n] = _nodes[n].Sum(e => _load[e] / _counts[e]);
                foreach (var e in _nodes[n])
                {
                    _holders[e].Add(n);
                    _has[n * _counts.Length + e] = true;
                }
            }
            _byLoad = Enumerable.Range(0, _nodes.Length).OrderByDescending(n => _nodeLoad[n]).ThenBy(n => n).ToArray();
        }

        /// <summary>Over-full nodes shed their most-replicated copies; under-held experts get holders. Returns the copies added.</summary>
        public int Repair()
        {
            var added = 0;
            foreach (var node in _nodes)
                while (node.Count > _shape.SlotsPerNode)
                {
                    var drop = node.OrderByDescending(e => _counts[e]).ThenBy(e => e).First();
                    node.Remove(drop);
                    _counts[drop]--;
                }
            Recompute();
            for (var e = 0; e < _counts.Length; e++)
                while (_counts[e] < _shape.MinReplicas)
                {
                    var to = Enumerable.Range(0, _nodes.Length).Where(n => !_nodes[n].Contains(e) && _nodes[n].Count < _shape.SlotsPerNode)
                        .OrderBy(n => _nodeLoad[n]).ThenBy(n => n).FirstOrDefault(-1);
                    if (to < 0)
                    {
                        // No free slot: a node without it gives up its copy of the most-replicated expert.
                        to = Enumerable.Range(0, _nodes.Length).Where(n => !_nodes[n].Contains(e) && _nodes[n].Any(x => _counts[x] > _shape.MinReplicas))
                            .OrderBy(n => _nodeLoad[n]).ThenBy(n => n).First();
                        var drop = _nodes[to].Where(x => _counts[x] > _shape.MinReplicas).OrderByDescending(x => _counts[x]).ThenBy(x => x).First();
                        _nodes[to].Remove(drop);
                        _counts[drop]--;
                    }
                    _nodes[to].Add(e);
                    _counts[e]++;
                    added++;
                    Recompute();
                }
            return added;
        }

        public int Apply(Step s)
        {
            if (s.Swap >= 0)
            {
                _nodes[s.From].Remove(s.Drop);
                _nodes[s.To].Remove(s.Swap);
                _nodes[s.From].Add(s.Swap);
                _nodes[s.To].Add(s.Drop);
                Recompute();
                return s.Cost;
            }
            if (s.Drop >= 0)
            {
                _nodes[s.From].Remove(s.Drop);
                _counts[s.Drop]--;
            }
            if (s.Add >= 0)
            {
                _nodes[s.To].Add(s.Add);
                _counts[s.Add]++;
            }
            Recompute();
            return s.Cost;
        }

        /// <summary>
        /// The step that removes the most load above the target (summed over the nodes above it) per copy loaded: a
        /// dropped copy costs nothing, an added one costs one, a swap two. Candidates start from the hottest nodes'
        /// experts and go to the lighter half of the nodes. Null when no step removes any.
        /// </summary>
        public Step? BestStep(int maxCost, double target)
        {
            var threshold = target * _nodeLoad.Average();
            Step? best = null;
            var bestScore = 0.0;
            void Consider(Step s)
            {
                if (s.Cost > maxCost) return;
                var gain = -ExcessChange(s, threshold);
                if (gain <= 1e-12) return;
                var score = gain / Math.Max(s.Cost, 0.5);
                if (score > bestScore + 1e-12) (best, bestScore) = (s, score);
            }
            var light = _byLoad.Skip(_nodes.Length / 2).ToArray();
            foreach (var hot in _byLoad.Take(3).Where(n => _nodeLoad[n] > threshold))
                foreach (var x in _nodes[hot])
                {
                    // Drop a redundant copy from the hot node; move it to a node with room; give it another holder in
                    // place of a redundant copy of another expert there; or swap it with one of that node's experts.
                    if (_counts[x] > _shape.MinReplicas) Consider(new Step(hot, x, -1, -1, 0));
                    var relief = _load[x] / _counts[x] - _load[x] / (_counts[x] + 1);
                    var addBound = 0.0;
                    foreach (var n in _holders[x]) if (_nodeLoad[n] > threshold) addBound += Math.Min(relief, _nodeLoad[n] - threshold);
                    foreach (var to in light)
                    {
                        if (to == hot || _has[to * _counts.Length + x]) continue;
                        if (_nodes[to].Count < _shape.SlotsPerNode)
                        {
                            Consider(new Step(hot, x, to, x, 1));
                            Consider(new Step(-1, -1, to, x, 1));
                        }
                        // Another holder of x can remove at most what its holders above the threshold carry of it
                        // beyond their new share: skip those steps when that cannot beat the best so far.
                        var canGain = addBound > bestScore + 1e-12;
                        foreach (var y in _nodes[to])
                        {
                            if (canGain && _counts[y] > _shape.MinReplicas) Consider(new Step(to, y, to, x, 1));
                            if (!_has[hot * _counts.Length + y]) Consider(new Step(hot, x, to, -1, 2) { Swap = y });
                        }
                    }
                }
            return best;
        }

        /// <summary>How the load above the threshold, summed over the nodes, changes with the step.</summary>
        private double ExcessChange(Step s, double threshold)
        {
            static double Over(double l, double t) => l > t ? l - t : 0;
            if (s.Swap >= 0)
            {
                var share = _load[s.Drop] / _counts[s.Drop] - _load[s.Swap] / _counts[s.Swap];
                return Over(_nodeLoad[s.From] - share, threshold) - Over(_nodeLoad[s.From], threshold)
                    + Over(_nodeLoad[s.To] + share, threshold) - Over(_nodeLoad[s.To], threshold);
            }
            var version = ++_version;
            var change = Visit(s.From, s, threshold, version) + Visit(s.To, s, threshold, version);
            if (s.Drop >= 0) foreach (var n in _holders[s.Drop]) change += Visit(n, s, threshold, version);
            if (s.Add >= 0) foreach (var n in _holders[s.Add]) change += Visit(n, s, threshold, version);
            return change;
        }

        /// <summary>Node n's change of load above the threshold with the step; 0 when it was counted already.</summary>
        private double Visit(int n, in Step s, double threshold, int version)
        {
            if (n < 0 || _stamp[n] == version) return 0;
            _stamp[n] = version;
            var l = _nodeLoad[n];
            if (s.Drop >= 0) l += Change(n, s.Drop, s);
            if (s.Add >= 0 && s.Add != s.Drop) l += Change(n, s.Add, s);
            return (l > threshold ? l - threshold : 0) - (_nodeLoad[n] > threshold ? _nodeLoad[n] - threshold : 0);
        }

        /// <summary>How node n's share of expert e changes with the step.</summary>
        private double Change(int n, int e, Step s)
        {
            var had = _has[n * _counts.Length + e];
            var has = (had && !(n == s.From && e == s.Drop)) || (n == s.To && e == s.Add);
            var count = _counts[e] - (e == s.Drop ? 1 : 0) + (e == s.Add ? 1 : 0);
            return (has && count > 0 ? _load[e] / count : 0) - (had ? _load[e] / _counts[e] : 0);
        }
    }
}
