using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Tests.Reference;

namespace MoeMesh.Engine.Tests.Model;

public sealed class DeepSeekModelTests
{
    private static readonly int[] Prompt = [5, 17, 300, 42, 8, 99, 250, 3, 77, 120, 64, 1];

    private static void AssertClose(double[] expected, float[] actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        var worst = expected.Select((e, i) => Math.Abs(e - actual[i])).Max();
        Assert.True(worst < tolerance, $"max |diff| {worst} exceeds {tolerance}");
    }

    private static void AssertClose(float[] expected, float[] actual, double tolerance) =>
        AssertClose(expected.Select(v => (double)v).ToArray(), actual, tolerance);

    [Theory]
    [InlineData("v3")]
    [InlineData("v2")]
    public void Prefill_MatchesFloat64Reference(string variant)
    {
        var dir = variant == "v3" ? TestModels.V3Dir : TestModels.V2Dir;
        var reference = new ReferenceDeepSeek(dir).Forward(Prompt);
        var harness = new ModelHarness(TestModels.Load(dir));
        var seq = harness.NewSequence(Prompt);
        var logits = harness.Step((seq, 0, Prompt.Length))[0];
        for (var t = 0; t < Prompt.Length; t++) AssertClose(reference[t], logits[t], 2e-3);
    }

    [Fact]
    public void PrefillThenDecode_MatchesFullRecompute()
    {
        var reference = new ReferenceDeepSeek(TestModels.V3Dir).Forward(Prompt);
        var harness = new ModelHarness(TestModels.Load(TestModels.V3Dir));
        var seq = harness.NewSequence(Prompt);
        harness.Step((seq, 0, 7));
        for (var t = 7; t < Prompt.Length; t++)
        {
            var logits = harness.Step((seq, t, 1))[0][0];
            AssertClose(reference[t], logits, 2e-3);
        }
    }

    [Fact]
    public void AbsorbedAttention_AgreesWithNaive()
    {
        var model = TestModels.Load(TestModels.V3Dir);
        float[][] Run(AttentionMode mode)
        {
            model.AttentionMode = mode;
            var h = new ModelHarness(model);
            var s = h.NewSequence(Prompt);
            var first = h.Step((s, 0, 6))[0];
            var rest = Enumerable.Range(6, Prompt.Length - 6).Select(t => h.Step((s, t, 1))[0][0]);
            return first.Concat(rest).ToArray();
        }
        var naive = Run(AttentionMode.Naive);
        var absorbed = Run(AttentionMode.Absorbed);
        model.AttentionMode = AttentionMode.Auto;
        for (var t = 0; t < naive.Length; t++) AssertClose(naive[t], absorbed[t], 1e-3);
    }

    /// <summary>
    /// Attention read in tiles of 3 context tokens with the online softmax, for each form, still matches the float64
    /// reference: a first chunk (its last tile partly masked), a second chunk whose context spans finished tiles
    /// and its own diagonal, then decode steps one token at a time.
    /// </summary>
    [Theory]
    [InlineData(AttentionMode.Naive)]
    [InlineData(AttentionMode.Absorbed)]
    [InlineData(AttentionMode.Auto)]
    public void TiledAttention_MatchesFloat64Reference(AttentionMode mode)
    {
        var reference = new ReferenceDeepSeek(TestModels.V3Dir).Forward(Prompt);
        var model = TestModels.Load(TestModels.V3Dir);
        model.AttentionMode = mode;
        model.AttentionTileTokens = 3;
        var logits = ChunksThenSingleTokens(model);
        for (var t = 0; t < Prompt.Length; t++) AssertClose(reference[t], logits[t], 2e-3);
    }

    /// <summary>The prompt's logits stepped as a first chunk of 4, a second of 5, then one token a step.</summary>
    private static float[][] ChunksThenSingleTokens(DeepSeekModel model)
    {
        var harness = new ModelHarness(model);
        var seq = harness.NewSequence(Prompt);
        return harness.Step((seq, 0, 4))[0]
            .Concat(harness.Step((seq, 4, 5))[0])
            .Concat(Enumerable.Range(9, Prompt.Length - 9).Select(t => harness.Step((seq, t, 1))[0][0]))
            .ToArray();
    }

    /// <summary>
    /// Prefill slices in libtorch's fused scaled-dot-product attention (the CUDA default, run here on the CPU) match the
    /// float64 reference: a first chunk (causal as the fused op defines it), a second whose queries see the first
    /// chunk and their own past (an explicit mask), then single tokens.
    /// </summary>
    [Fact]
    public void FusedPrefillAttention_MatchesFloat64Reference()
    {
        var reference = new ReferenceDeepSeek(TestModels.V3Dir).Forward(Prompt);
        var profile = new StepProfile();
        var model = DeepSeekModel.Load(TestModels.V3Dir, ComputeOptions.Cpu with { Profile = profile });
        model.AttentionMode = AttentionMode.Naive;
        model.FusedAttention = true;
        var logits = ChunksThenSingleTokens(model);
        // Every step here is a prefill slice (the harness steps single tokens as slices too), each layer's fused.
        Assert.Equal((2 + Prompt.Length - 9) * model.Config.NumHiddenLayers, profile.FusedSlices);
        for (var t = 0; t < Prompt.Length; t++) AssertClose(reference[t], logits[t], 2e-3);
    }

    /// <summary>Decode tokens of sequences with contexts of 3, 8 and 13 tokens, in one padded group read in tiles of 2, equal each decoded alone untiled.</summary>
    [Fact]
    public void TiledDecodeGroup_EqualsUntiledDecodeAlone()
    {
        var model = TestModels.Load(TestModels.V3Dir);
        int[][] prompts = [[9, 8], [100, 200, 30, 40, 50, 60, 7], Prompt];
        var alone = prompts.Select(p =>
        {
            var h = new ModelHarness(model);
            var s = h.NewSequence([.. p, 11]);
            h.Step((s, 0, p.Length));
            return h.Step((s, p.Length, 1))[0][0];
        }).ToArray();

        model.AttentionTileTokens = 2;
        var hb = new ModelHarness(model);
        var seqs = prompts.Select(p => hb.NewSequence([.. p, 11])).ToArray();
        foreach (var (s, p) in seqs.Zip(prompts)) hb.Step((s, 0, p.Length));
        var together = hb.Step(seqs.Select((s, i) => (s, prompts[i].Length, 1)).ToArray());
        for (var i = 0; i < prompts.Length; i++) AssertClose(alone[i], together[i][0], 1e-4);
    }

    /// <summary>The cost model on DeepSeek-V3's own attention shape: decode and short chunks absorbed, long chunks naive.</summary>
    [Theory]
    [InlineData(1, 100_000, false)]
    [InlineData(16, 4096, false)]
    [InlineData(512, 512, true)]
    [InlineData(2048, 100_000, true)]
    public void NaiveIsCheaper_FollowsTheMultiplyAddCount(long queries, long context, bool naive)
    {
        var v3 = Engine.Config.ModelConfig.Parse("""
            {"model_type":"deepseek_v3","hidden_size":7168,"num_attention_heads":128,"kv_lora_rank":512,"q_lora_rank":1536,"qk_nope_head_dim":128,
             "qk_rope_head_dim":64,"v_head_dim":128,"num_hidden_layers":61,"vocab_size":129280,"intermediate_size":18432,
             "moe_intermediate_size":2048,"n_routed_experts":256,"num_experts_per_tok":8,"rms_norm_eps":1e-6}
            """);
        // Per context token: naive 512·128·256 + 128·L·320, absorbed 128·L·1088 (plus L-only terms): naive wins past L ≈ 171.
        Assert.Equal(naive, MlaAttention.NaiveIsCheaper(v3, queries, context));
    }

    /// <summary>Packed: a mixed step takes the decode kernel inside libtorch's path, a decode-only step the kernels end to end.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BatchedStep_EqualsOneSequenceAtATime(bool packed)
    {
        var model = packed
            ? DeepSeekModel.Load(TestModels.V3Dir, ComputeOptions.Cpu with { PackedDense = true, PackedExperts = true })
            : TestModels.Load(TestModels.V3Dir);
        int[][] prompts = [Prompt, [9, 8, 7], [100, 200, 30, 40, 50, 60, 7, 8]];

        // One at a time: prefill each fully, then decode one extra token each.
        var alone = prompts.Select(p =>
        {
            var h = new ModelHarness(model);
            var s = h.NewSequence([.. p, 11]);
            var pre = h.Step((s, 0, p.Length))[0];
            return pre.Append(h.Step((s, p.Length, 1))[0][0]).ToArray();
        }).ToArray();

        // Together: sequence 0 prefilled first, then one step mixing its decode with the others' prefills.
        var hb = new ModelHarness(model);
        var seqs = prompts.Select(p => hb.NewSequence([.. p, 11])).ToArray();
        var first = hb.Step((seqs[0], 0, prompts[0].Length))[0];
        var mixed = hb.Step((seqs[0], prompts[0].Length, 1), (seqs[1], 0, prompts[1].Length), (seqs[2], 0, prompts[2].Length));
        var decodes = hb.Step((seqs[1], prompts[1].Length, 1), (seqs[2], prompts[2].Length, 1));

        AssertClose(alone[0][^1], mixed[0][0], 1e-3);
        for (var t = 0; t < prompts[0].Length; t++) AssertClose(alone[0][t], first[t], 1e-3);
        for (var i = 1; i < 3; i++)
        {
            for (var t = 0; t < prompts[i].Length; t++) AssertClose(alone[i][t], mixed[i][t], 1e-3);
            AssertClose(alone[i][^1], decodes[i - 1][0], 1e-3);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void MicroBatchedStep_EqualsOneBatch(int split)
    {
        var model = TestModels.Load(TestModels.V3Dir);
        int[][] prompts = [Prompt, [9, 8, 7], [100, 200, 30, 40, 50, 60, 7, 8]];
        float[][][] Run(int cut)
        {
            var h = new ModelHarness(model);
            var seqs = prompts.Select(p => h.NewSequence([.. p, 11])).ToArray();
            h.Step((seqs[0], 0, prompts[0].Length));
            // A decode and two prefills, then two decodes, each step cut into two micro-batches.
            var mixed = h.Step(cut, (seqs[0], prompts[0].Length, 1), (seqs[1], 0, prompts[1].Length), (seqs[2], 0, prompts[2].Length));
            var decodes = h.Step(Math.Min(cut, 1), (seqs[1], prompts[1].Length, 1), (seqs[2], prompts[2].Length, 1));
            return [.. mixed, .. decodes];
        }
        var whole = Run(0);
        var micro = Run(split);
        Assert.Equal(whole.Length, micro.Length);
        for (var c = 0; c < whole.Length; c++)
            for (var t = 0; t < whole[c].Length; t++) AssertClose(whole[c][t], micro[c][t], 1e-4);
    }

    [Fact]
    public void PagedScatteredCache_EqualsContiguousCache()
    {
        var model = TestModels.Load(TestModels.V3Dir);
        var contiguous = new ModelHarness(model, pageSize: 64, pages: 4);
        var c = contiguous.NewSequence(Prompt);
        var expected = contiguous.Step((c, 0, Prompt.Length))[0];

        var paged = new ModelHarness(model, pageSize: 2, pages: 64);
        // Scatter the free list: take pages for a decoy, then free every other one.
        var decoy = new List<int>();
        Assert.True(paged.Allocator.TryReserve(decoy, 40));
        var keep = decoy.Where((_, i) => i % 2 == 0).ToList();
        var release = decoy.Where((_, i) => i % 2 == 1).ToList();
        paged.Allocator.Release([.. release]);
        var s = paged.NewSequence(Prompt);
        var chunked = paged.Step((s, 0, 5))[0].Concat(paged.Step((s, 5, Prompt.Length - 5))[0]).ToArray();
        Assert.Contains(s.BlockTable[1], release);
        for (var t = 0; t < Prompt.Length; t++) AssertClose(expected[t], chunked[t], 1e-3);
        Assert.NotEmpty(keep);
    }

    /// <summary>
    /// Dense weights and routed experts held as stored (BF16) and computed in the engine's kernel: prefill then decode
    /// against the float64 reference. The 80-token prompt's prefill passes <see cref="Projection.KernelRows"/>, so its
    /// projections widen the weights for libtorch; decode runs in the kernel. The bytes held are the checkpoint's for
    /// every packed projection, embedding and LM head, and a float32 copy for the rest (norms, router).
    /// </summary>
    [Theory]
    [InlineData("v3", 12)]
    [InlineData("v2", 12)]
    [InlineData("v3", 80)]
    public void PackedWeights_MatchFloat64Reference_AndHoldTheCheckpointsBytes(string variant, int length)
    {
        var dir = variant == "v3" ? TestModels.V3Dir : TestModels.V2Dir;
        var prompt = Enumerable.Range(0, length).Select(i => (i * 37 + 5) % 300).ToArray();
        var reference = new ReferenceDeepSeek(dir).Forward(prompt);
        var model = DeepSeekModel.Load(dir, ComputeOptions.Cpu with { PackedDense = true, PackedExperts = true });
        var harness = new ModelHarness(model);
        var seq = harness.NewSequence(prompt);
        var prefill = harness.Step((seq, 0, length - 3))[0];
        for (var t = 0; t < length - 3; t++) AssertClose(reference[t], prefill[t], 2e-3);
        for (var t = length - 3; t < length; t++) AssertClose(reference[t], harness.Step((seq, t, 1))[0][0], 2e-3);

        Assert.Equal(MoeMesh.Testing.CheckpointBytes.Dense(dir, packed: true), model.DenseByteSize);
        Assert.Equal(MoeMesh.Testing.CheckpointBytes.Dense(dir, packed: false), TestModels.Load(dir).DenseByteSize);
        Assert.Equal(MoeMesh.Testing.CheckpointBytes.Experts(dir, packed: true), ((Engine.Experts.LocalExpertBackend)model.Experts).ByteSize);
    }

    [Fact]
    public void Fp8Checkpoint_EqualsFloat32CheckpointOfDequantisedWeights()
    {
        var fp8Dir = TestModels.Fp8Dir;
        // The same weights, dequantised by the test's own arithmetic and stored as F32.
        var f32Dir = Path.Combine(Path.GetTempPath(), "moemesh-tests", $"fp8-as-f32-{Environment.ProcessId}");
        Directory.CreateDirectory(f32Dir);
        foreach (var f in new[] { "config.json", "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(fp8Dir, f), Path.Combine(f32Dir, f), overwrite: true);
        var config = Engine.Config.ModelConfig.Load(Path.Combine(fp8Dir, "config.json"));
        var tensors = DemoModel.Tensors(DemoShape.Tiny, config.VocabSize, 11).Select(t =>
        {
            if (!t.Name.EndsWith("_proj.weight")) return t;
            var (codes, scales) = Fp8Quantiser.Quantise(t.Values, (int)t.Shape[0], (int)t.Shape[1]);
            var values = codes.Select((code, i) =>
                DecodeE4M3(code) * scales.Values[i / (int)t.Shape[1] / 128 * scales.Cols + i % (int)t.Shape[1] / 128]).ToArray();
            return (t.Name, t.Shape, values);
        });
        Engine.Checkpoint.SafetensorsWriter.Write(Path.Combine(f32Dir, "model.safetensors"), DemoModel.Encode(tensors, DemoModel.WeightFormat.F32).ToList());

        float[] Logits(string dir)
        {
            var h = new ModelHarness(TestModels.Load(dir));
            return h.Step((h.NewSequence(Prompt), 0, Prompt.Length))[0][^1];
        }
        AssertClose(Logits(f32Dir), Logits(fp8Dir), 1e-4);
    }

    /// <summary>e4m3fn from its definition: 1 sign, 4 exponent (bias 7), 3 mantissa bits (the test's own arithmetic, not the engine's).</summary>
    internal static float DecodeE4M3(byte code)
    {
        var sign = (code & 0x80) != 0 ? -1.0 : 1.0;
        int e = (code >> 3) & 0xF, m = code & 7;
        return (float)(e == 0 ? sign * m / 8.0 * Math.Pow(2, -6) : sign * (1 + m / 8.0) * Math.Pow(2, e - 7));
    }
}
