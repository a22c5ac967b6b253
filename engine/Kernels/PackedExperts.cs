using System.Numerics;
using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Kernels;

/// <summary>One routed expert's SwiGLU weights in the checkpoint's type: down(silu(gate(x)) * up(x)).</summary>
public sealed class PackedExpert(PackedMatrix gate, PackedMatrix up, PackedMatrix down) : IDisposable
{
    public PackedMatrix Gate { get; } = gate;
    public PackedMatrix Up { get; } = up;
    public PackedMatrix Down { get; } = down;

    public int Hidden => Gate.Cols;
    public int Intermediate => Gate.Rows;

    public long ByteSize => Gate.ByteSize + Up.ByteSize + Down.ByteSize;

    public void Dispose()
    {
        Gate.Dispose();
        Up.Dispose();
        Down.Dispose();
    }

    public static PackedExpert Read(CheckpointReader r, string prefix, int hidden, int intermediate) => new(
        PackedMatrix.Read(r, $"{prefix}.gate_proj.weight", intermediate, hidden),
        PackedMatrix.Read(r, $"{prefix}.up_proj.weight", intermediate, hidden),
        PackedMatrix.Read(r, $"{prefix}.down_proj.weight", hidden, intermediate));
}

/// <summary>
/// The routed experts of one MoE layer in one parallel pass on the CPU: every expert that has tokens runs on all
/// of its rows at once (each weight row read once for every four rows), the work split across cores by blocks of
/// output rows, first gate and up for every expert, then down; the weighted outputs are added per token in
/// ascending expert order (as the libtorch path adds them).
/// </summary>
public static class PackedExpertPass
{
    /// <summary>
    /// Output rows a work item takes at least and at most: as many as give each thread about four items, so that a
    /// thread streams long runs of an expert's weights where there are few threads (bench --kernel-rates --expert-pass
    /// on two cores: 64-row items took 0.27 / 1.99 / 3.79 ms a layer at 1 / 8 / 32 tokens, 256-row items 0.24 / 1.82 /
    /// 3.49) and still spreads over many.
    /// </summary>
    private const int MinBlock = 64, MaxBlock = 256;

    /// <summary>Expert rows from which the outputs' weighted sum is spread over the cores.</summary>
    private const int ParallelCombinePairs = 256;

    /// <summary>
    /// <paramref name="hidden"/> is [tokens, H]; pair i sends token <paramref name="pairTokens"/>[i] to expert
    /// <paramref name="pairExperts"/>[i] with weight <paramref name="pairWeights"/>[i]. Writes [tokens, H] to
    /// <paramref name="result"/> (a tensor's memory, say: a prefill chunk's result is megabytes, and a fresh array's
    /// pages cost their faults every layer).
    /// </summary>
    public static void Run(ReadOnlySpan<float> hidden, int tokens, int h, ReadOnlySpan<long> pairTokens, ReadOnlySpan<long> pairExperts, ReadOnlySpan<float> pairWeights,
        Func<int, PackedExpert> expertOf, Span<float> result)
    {
        if (hidden.Length < (long)tokens * h || result.Length < (long)tokens * h) throw new ArgumentOutOfRangeException(nameof(result));
        var pairs = pairTokens.Length;
        // Pairs sorted by expert, stably (the order the libtorch path adds them in).
        var experts = pairExperts.ToArray();
        var order = Enumerable.Range(0, pairs).OrderBy(i => experts[i]).ToArray();
        var groups = new List<(PackedExpert Expert, int Start, int Rows)>();
        for (var s = 0; s < pairs;)
        {
            var e = pairExperts[order[s]];
            var end = s;
            while (end < pairs && pairExperts[order[end]] == e) end++;
            groups.Add((expertOf((int)e), s, end - s));
            s = end;
        }
        // Scratch from the shared pool: a prefill chunk's pass needs tens of MB, and fresh arrays of that size cost
        // their page faults (and the large-object heap's collections) every layer.
        var pool = System.Buffers.ArrayPool<float>.Shared;
        var inter = groups.Count == 0 ? 0 : groups.Max(g => g.Expert.Intermediate);
        var x = pool.Rent(pairs * h);
        var act = pool.Rent(pairs * inter);
        var gateOut = pool.Rent(pairs * inter);
        var output = pool.Rent(pairs * h);
        try
        {
            Pass(hidden, h, pairTokens, order, groups, inter, x, act, gateOut, output);
            Combine(tokens, h, pairTokens, pairWeights, order, output, result);
        }
        finally
        {
            pool.Return(x);
            pool.Return(act);
            pool.Return(gateOut);
            pool.Return(output);
        }
    }

    private static void Pass(ReadOnlySpan<float> hidden, int h, ReadOnlySpan<long> pairTokens, int[] order,
        List<(PackedExpert Expert, int Start, int Rows)> groups, int inter, float[] x, float[] act, float[] gateOut, float[] output)
    {
        var pairs = pairTokens.Length;
        // Rows of every group gathered: the inputs of pair order[s] at row s.
        for (var s = 0; s < pairs; s++) hidden.Slice((int)pairTokens[order[s]] * h, h).CopyTo(x.AsSpan(s * h, h));

        var first = Items(groups, g => g.Expert.Intermediate);
        KernelThreads.For(first.Count, w =>
        {
            var (gi, from, to) = first[w];
            var (expert, start, rows) = groups[gi];
            var xs = x.AsSpan(start * h, rows * h);
            expert.Gate.Multiply(xs, rows, gateOut.AsSpan(start * inter), inter, from, to);
            expert.Up.Multiply(xs, rows, act.AsSpan(start * inter), inter, from, to);
            for (var r = 0; r < rows; r++) Silu(gateOut.AsSpan((start + r) * inter + from, to - from), act.AsSpan((start + r) * inter + from, to - from));
        });
        var second = Items(groups, g => g.Expert.Hidden);
        KernelThreads.For(second.Count, w =>
        {
            var (gi, from, to) = second[w];
            var (expert, start, rows) = groups[gi];
            // The activations' rows are inter wide; an expert of another width reads a compact copy of its columns.
            ReadOnlySpan<float> a = act.AsSpan(start * inter, rows * inter);
            if (expert.Intermediate != inter)
            {
                var compact = new float[rows * expert.Intermediate];
                for (var r = 0; r < rows; r++) act.AsSpan((start + r) * inter, expert.Intermediate).CopyTo(compact.AsSpan(r * expert.Intermediate));
                a = compact;
            }
            expert.Down.Multiply(a, rows, output.AsSpan(start * h), h, from, to);
        });
    }

    /// <summary>up[j] *= silu(gate[j]) = gate[j] / (1 + e^-gate[j]).</summary>
    private static void Silu(ReadOnlySpan<float> gate, Span<float> up)
    {
        var j = 0;
        if (Vector.IsHardwareAccelerated)
            for (; j + Vector<float>.Count <= gate.Length; j += Vector<float>.Count)
            {
                var g = new Vector<float>(gate[j..]);
                (new Vector<float>(up[j..]) * (g / (Vector<float>.One + Vector.Exp(-g)))).CopyTo(up[j..]);
            }
        for (; j < gate.Length; j++) up[j] *= gate[j] / (1 + MathF.Exp(-gate[j]));
    }

    /// <summary>
    /// Each token's weighted expert outputs summed in ascending expert order (the order of <paramref name="order"/>),
    /// tokens spread over the cores for a prefill-sized pass. Multiplies and adds round separately, as the libtorch
    /// path does.
    /// </summary>
    private static unsafe void Combine(int tokens, int h, ReadOnlySpan<long> pairTokens, ReadOnlySpan<float> pairWeights, int[] order, float[] output, Span<float> result)
    {
        var pairs = order.Length;
        // Each token's rows of the sorted pass, ascending: positions first[t] .. first[t + 1] of rowsOf.
        var first = new int[tokens + 1];
        for (var s = 0; s < pairs; s++) first[pairTokens[order[s]] + 1]++;
        for (var t = 0; t < tokens; t++) first[t + 1] += first[t];
        var rowsOf = new int[pairs];
        var weights = new float[pairs];
        var next = first[..tokens];
        for (var s = 0; s < pairs; s++)
        {
            var at = next[pairTokens[order[s]]]++;
            rowsOf[at] = s;
            weights[at] = pairWeights[order[s]];
        }
        result[..(tokens * h)].Clear();
        fixed (float* resultAt = result)
        {
            var combined = (nint)resultAt;
            void Tokens(int from, int to)
            {
                for (var t = from; t < to; t++)
                {
                    var dst = new Span<float>((float*)combined + (long)t * h, h);
                    for (var p = first[t]; p < first[t + 1]; p++)
                    {
                        var src = output.AsSpan(rowsOf[p] * h, h);
                        var weight = weights[p];
                        var c = 0;
                        if (Vector.IsHardwareAccelerated)
                            for (var w = new Vector<float>(weight); c + Vector<float>.Count <= h; c += Vector<float>.Count)
                                (new Vector<float>(dst[c..]) + new Vector<float>(src[c..]) * w).CopyTo(dst[c..]);
                        for (; c < h; c++) dst[c] += src[c] * weight;
                    }
                }
            }
            // A decode step's few tokens cost less than a parallel call's fixed cost.
            var items = pairs < ParallelCombinePairs ? 1 : Math.Min(tokens, 4 * Environment.ProcessorCount);
            if (items == 1) Tokens(0, tokens);
            else KernelThreads.For(items, i => Tokens((int)((long)tokens * i / items), (int)((long)tokens * (i + 1) / items)));
        }
    }

    private static List<(int Group, int From, int To)> Items(List<(PackedExpert Expert, int Start, int Rows)> groups, Func<(PackedExpert Expert, int Start, int Rows), int> outputs)
    {
        var total = groups.Sum(g => (long)outputs(g));
        var block = (int)Math.Clamp(total / (4 * KernelThreads.Threads) & ~15, MinBlock, MaxBlock);
        var items = new List<(int, int, int)>();
        for (var g = 0; g < groups.Count; g++)
        {
            var n = outputs(groups[g]);
            for (var from = 0; from < n; from += block) items.Add((g, from, Math.Min(n, from + block)));
        }
        return items;
    }
}
