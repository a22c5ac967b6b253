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
    /// <summary>Output rows per work item: enough work to amortise scheduling, small enough to spread over cores.</summary>
    private const int Block = 64;

    /// <summary>
    /// <paramref name="hidden"/> is [tokens, H]; pair i sends token <paramref name="pairTokens"/>[i] to expert
    /// <paramref name="pairExperts"/>[i] with weight <paramref name="pairWeights"/>[i]. Returns [tokens, H].
    /// </summary>
    public static float[] Run(ReadOnlySpan<float> hidden, int tokens, int h, ReadOnlySpan<long> pairTokens, ReadOnlySpan<long> pairExperts, ReadOnlySpan<float> pairWeights,
        Func<int, PackedExpert> expertOf)
    {
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
            return Pass(hidden, tokens, h, pairTokens, pairWeights, order, groups, inter, x, act, gateOut, output);
        }
        finally
        {
            pool.Return(x);
            pool.Return(act);
            pool.Return(gateOut);
            pool.Return(output);
        }
    }

    private static float[] Pass(ReadOnlySpan<float> hidden, int tokens, int h, ReadOnlySpan<long> pairTokens, ReadOnlySpan<float> pairWeights, int[] order,
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
            for (var r = 0; r < rows; r++)
                for (var j = from; j < to; j++)
                {
                    var g = gateOut[(start + r) * inter + j];
                    act[(start + r) * inter + j] *= g / (1 + MathF.Exp(-g));
                }
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
        var combined = new float[tokens * h];
        for (var s = 0; s < pairs; s++)
        {
            var t = (int)pairTokens[order[s]];
            var weight = pairWeights[order[s]];
            var src = output.AsSpan(s * h, h);
            var dst = combined.AsSpan(t * h, h);
            for (var c = 0; c < h; c++) dst[c] += src[c] * weight;
        }
        return combined;
    }

    private static List<(int Group, int From, int To)> Items(List<(PackedExpert Expert, int Start, int Rows)> groups, Func<(PackedExpert Expert, int Start, int Rows), int> outputs)
    {
        var items = new List<(int, int, int)>();
        for (var g = 0; g < groups.Count; g++)
        {
            var n = outputs(groups[g]);
            for (var from = 0; from < n; from += Block) items.Add((g, from, Math.Min(n, from + Block)));
        }
        return items;
    }
}
