using MoeMesh.Engine.Kernels;

namespace MoeMesh.Engine.Tests.Kernels;

public sealed class LatentDecodeAttentionTests
{
    /// <summary>
    /// Against the definition computed in float64 by the test: per head, q_latent = W_UKᵀ q_nope; scores over the
    /// sequence's context rows (latent and rope key) times the scale; softmax; the latent sum back through W_UV.
    /// Contexts of 1 token, one tile, and several tiles (past the kernel's 128), in scattered and padded slots; one
    /// sequence (its heads split across the cores), three and four. A latent of 16 runs the per-column loops only; 72
    /// runs two whole blocks of 32 columns and a tail; six value rows a whole four and a tail. kv_b_proj as float32, or
    /// held as BF16 and widened a head at a time. Both forms of the kernel, one pass by heads (small contexts) and three
    /// passes (heads, sequences, heads), give the same floats.
    /// </summary>
    [Theory]
    [InlineData(new[] { 300 }, 16, false)]
    [InlineData(new[] { 1, 129, 77 }, 16, false)]
    [InlineData(new[] { 5 }, 16, false)]
    [InlineData(new[] { 300 }, 72, false)]
    [InlineData(new[] { 1, 129, 77 }, 72, false)]
    [InlineData(new[] { 7, 1, 40, 130 }, 72, false)]
    [InlineData(new[] { 300 }, 16, true)]
    [InlineData(new[] { 7, 1, 40, 130 }, 72, true)]
    [InlineData(new[] { 2000, 900, 1500 }, 72, true)]
    public void Run_MatchesTheDefinition(int[] lengths, int latentWidth, bool packedKvB)
    {
        var s = new LatentDecodeAttention.Shape(Heads: 3, Nope: 8, Rope: 4, Value: 6, Latent: latentWidth, Scale: 0.3f);
        var random = new Random(lengths.Sum());
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var b = lengths.Length;
        var maxContext = lengths.Max() + 3; // padded past the longest
        const int slotCount = 1000;
        var cache = Random(slotCount * s.Row);
        var slots = new long[b * maxContext];
        var order = Enumerable.Range(0, slotCount).OrderBy(_ => random.Next()).ToArray();
        for (var i = 0; i < slots.Length; i++) slots[i] = order[i % slotCount];
        var qNope = Random(b * s.Heads * s.Nope);
        var qPe = Random(b * s.Heads * s.Rope);
        // kv_b_proj's values are BF16's (the low half of each float cleared), so that the packed copy holds them exactly.
        var kvBits = Random(s.Heads * (s.Nope + s.Value) * s.Latent).Select(v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16)).ToArray();
        var kvB = kvBits.Select(bits => BitConverter.UInt32BitsToSingle((uint)bits << 16)).ToArray();
        var output = new float[b * s.Heads * s.Value];

        var contexts = lengths.Select(l => (long)l).ToArray();
        using var packed = packedKvB ? new PackedMatrix(s.Heads * (s.Nope + s.Value), s.Latent, kvBits) : null;
        // The form the public entry picks for this context, then the other one.
        if (packed is not null) LatentDecodeAttention.Run(s, b, qNope, qPe, cache, slots, maxContext, contexts, packed, output);
        else LatentDecodeAttention.Run(s, b, qNope, qPe, cache, slots, maxContext, contexts, kvB, output);
        var byHeads = (long)b * maxContext * s.Row * sizeof(float) <= LatentDecodeAttention.ByHeadsContextBytes;
        var other = new float[output.Length];
        LatentDecodeAttention.Run(s, b, qNope, qPe, cache, slots, maxContext, contexts, packed is null ? kvB : default, packed, other, !byHeads);
        // Each head and sequence runs the same arithmetic in either form.
        Assert.Equal(output, other);

        for (var seq = 0; seq < b; seq++)
            for (var h = 0; h < s.Heads; h++)
            {
                var kRow = (int n) => h * (s.Nope + s.Value) + n;
                var q = new double[s.Row];
                for (var c = 0; c < s.Latent; c++)
                    for (var n = 0; n < s.Nope; n++) q[c] += (double)qNope[(seq * s.Heads + h) * s.Nope + n] * kvB[kRow(n) * s.Latent + c];
                for (var r = 0; r < s.Rope; r++) q[s.Latent + r] = qPe[(seq * s.Heads + h) * s.Rope + r];
                var scores = Enumerable.Range(0, lengths[seq]).Select(t =>
                {
                    var slot = (int)slots[seq * maxContext + t];
                    return s.Scale * Enumerable.Range(0, s.Row).Sum(i => q[i] * cache[slot * s.Row + i]);
                }).ToArray();
                var top = scores.Max();
                var weights = scores.Select(x => Math.Exp(x - top)).ToArray();
                var total = weights.Sum();
                var latent = new double[s.Latent];
                for (var t = 0; t < lengths[seq]; t++)
                    for (var c = 0; c < s.Latent; c++) latent[c] += weights[t] / total * cache[(int)slots[seq * maxContext + t] * s.Row + c];
                for (var v = 0; v < s.Value; v++)
                {
                    var expected = Enumerable.Range(0, s.Latent).Sum(c => latent[c] * kvB[kRow(s.Nope + v) * s.Latent + c]);
                    var actual = output[(seq * s.Heads + h) * s.Value + v];
                    Assert.True(Math.Abs(expected - actual) < 1e-5, $"sequence {seq} head {h} value {v}: {actual} vs {expected}");
                }
            }
    }
}
