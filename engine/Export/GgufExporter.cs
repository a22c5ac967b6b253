using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Config;
using MoeMesh.Engine.Demo;

namespace MoeMesh.Engine.Export;

/// <summary>
/// Writes a Hugging Face DeepSeek-V2/V3 checkpoint folder as one GGUF file for llama.cpp's <c>deepseek2</c>
/// architecture (llama.cpp, Ollama, LLamaSharp load it): the config as deepseek2 metadata, the byte-level BPE
/// tokenizer (padded with unused tokens up to the embedding's rows), and the tensors in llama.cpp's layout, MLA
/// form: kv_b_proj split per head into attn_k_b and attn_v_b, routed experts stacked per layer. Norms, biases and
/// the router stay F32; the rest is written in the chosen type (BF16 copied as stored when the checkpoint is BF16).
/// Learned from llama.cpp's converter and ggml's GGUF documentation. Multi-token-prediction layers are left out.
/// </summary>
public static class GgufExporter
{
    private const string Arch = "deepseek2";

    // llama.cpp's token types.
    private const int Normal = 1;
    private const int Control = 3;
    private const int UserDefined = 4;
    private const int Unused = 5;

    /// <summary>Parses f32, f16 or bf16.</summary>
    public static GgufType ParseType(string text) => text.ToLowerInvariant() switch
    {
        "f32" => GgufType.F32,
        "f16" => GgufType.F16,
        "bf16" => GgufType.BF16,
        _ => throw new FormatException("expected f32, f16 or bf16"),
    };

    /// <summary>Exports <paramref name="modelDirectory"/> to <paramref name="outputPath"/> (written beside it, then renamed); warnings go to <paramref name="log"/>.</summary>
    public static void Export(string modelDirectory, string outputPath, GgufType type, TextWriter log)
    {
        var c = ModelConfig.Load(Path.Combine(modelDirectory, "config.json"));
        Check(c);
        using var reader = new CheckpointReader(modelDirectory);
        var gguf = new GgufWriter();
        Metadata(gguf, c, Path.GetFileName(Path.GetFullPath(modelDirectory).TrimEnd(Path.DirectorySeparatorChar)), type, log);
        Tokenizer(gguf, c, modelDirectory, log);
        Tensors(gguf, c, reader, type);
        var temporary = outputPath + ".partial";
        try
        {
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                gguf.Write(file);
            }
            File.Move(temporary, outputPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>What llama.cpp's deepseek2 cannot compute as the checkpoint's own code does is refused, not approximated.</summary>
    private static void Check(ModelConfig c)
    {
        if (c.MoeLayerFreq != 1)
            throw new InvalidDataException($"moe_layer_freq {c.MoeLayerFreq}: llama.cpp's deepseek2 makes every layer after the leading dense ones an MoE layer");
        if (c.TopkMethod == TopkMethod.GroupLimitedGreedy && c.NGroup > 1 && c.TopkGroup < c.NGroup)
            throw new InvalidDataException("topk_method group_limited_greedy: llama.cpp's deepseek2 has no group-limited greedy routing (only noaux_tc's group scores)");
        if (c.RopeScaling is { } y && Math.Abs(y.Mscale - y.MscaleAllDim) > 1e-12)
            throw new InvalidDataException($"rope_scaling mscale {y.Mscale} differs from mscale_all_dim {y.MscaleAllDim}: llama.cpp's deepseek2 takes them as equal");
    }

    private static void Metadata(GgufWriter g, ModelConfig c, string name, GgufType type, TextWriter log)
    {
        g.Add("general.architecture", Arch);
        g.Add("general.name", name);
        g.Add("general.file_type", type switch { GgufType.F32 => 0u, GgufType.F16 => 1u, _ => 32u });
        g.Add($"{Arch}.vocab_size", (uint)c.VocabSize);
        g.Add($"{Arch}.context_length", (uint)c.MaxPositionEmbeddings);
        g.Add($"{Arch}.embedding_length", (uint)c.HiddenSize);
        g.Add($"{Arch}.block_count", (uint)c.NumHiddenLayers);
        g.Add($"{Arch}.feed_forward_length", (uint)c.IntermediateSize);
        g.Add($"{Arch}.leading_dense_block_count", (uint)c.FirstKDenseReplace);
        // MLA: one latent "head" of kv_lora_rank + rope width shared by every query head.
        g.Add($"{Arch}.attention.head_count", (uint)c.NumAttentionHeads);
        g.Add($"{Arch}.attention.head_count_kv", 1u);
        g.Add($"{Arch}.attention.key_length", (uint)(c.KvLoraRank + c.QkRopeHeadDim));
        g.Add($"{Arch}.attention.value_length", (uint)c.KvLoraRank);
        g.Add($"{Arch}.attention.key_length_mla", (uint)(c.QkNopeHeadDim + c.QkRopeHeadDim));
        g.Add($"{Arch}.attention.value_length_mla", (uint)c.VHeadDim);
        g.Add($"{Arch}.attention.q_lora_rank", (uint)(c.QLoraRank ?? 0));
        g.Add($"{Arch}.attention.kv_lora_rank", (uint)c.KvLoraRank);
        g.Add($"{Arch}.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        g.Add($"{Arch}.rope.dimension_count", (uint)c.QkRopeHeadDim);
        g.Add($"{Arch}.rope.freq_base", (float)c.RopeTheta);
        if (c.RopeScaling is { } y)
        {
            g.Add($"{Arch}.rope.scaling.type", "yarn");
            g.Add($"{Arch}.rope.scaling.factor", (float)y.Factor);
            g.Add($"{Arch}.rope.scaling.original_context_length", (uint)y.OriginalMaxPositionEmbeddings);
            g.Add($"{Arch}.rope.scaling.yarn_log_multiplier", (float)(0.1 * y.MscaleAllDim));
            g.Add($"{Arch}.rope.scaling.yarn_beta_fast", (float)y.BetaFast);
            g.Add($"{Arch}.rope.scaling.yarn_beta_slow", (float)y.BetaSlow);
            if (y.BetaFast != 32 || y.BetaSlow != 1)
                log.WriteLine($"warning: llama.cpp takes YaRN's beta_fast/beta_slow from its context options (default 32/1), not from the file: pass {y.BetaFast}/{y.BetaSlow} there");
        }
        else
        {
            g.Add($"{Arch}.rope.scaling.type", "none");
        }
        g.Add($"{Arch}.expert_count", (uint)c.NRoutedExperts);
        g.Add($"{Arch}.expert_used_count", (uint)c.NumExpertsPerTok);
        g.Add($"{Arch}.expert_shared_count", (uint)c.NSharedExperts);
        g.Add($"{Arch}.expert_feed_forward_length", (uint)c.MoeIntermediateSize);
        g.Add($"{Arch}.expert_gating_func", c.ScoringFunc == ScoringFunc.Sigmoid ? 2u : 1u);
        var normalise = c.NumExpertsPerTok > 1 && c.NormTopkProb;
        g.Add($"{Arch}.expert_weights_norm", normalise);
        // llama.cpp scales after normalising, as V3 does; V2's code scales only unnormalised weights.
        g.Add($"{Arch}.expert_weights_scale", (float)(c.ModelType == "deepseek_v3" || !normalise ? c.RoutedScalingFactor : 1.0));
        // Group limits change the choice only when some groups are dropped (llama.cpp requires 0 < used < count).
        if (c.TopkMethod == TopkMethod.NoAuxTc && c.NGroup > 1 && c.TopkGroup < c.NGroup)
        {
            g.Add($"{Arch}.expert_group_count", (uint)c.NGroup);
            g.Add($"{Arch}.expert_group_used_count", (uint)c.TopkGroup);
        }
    }

    private static void Tokenizer(GgufWriter g, ModelConfig c, string directory, TextWriter log)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "tokenizer.json")))!;
        var model = json["model"] ?? throw new InvalidDataException("tokenizer.json has no model");
        if ((string?)model["type"] != "BPE") throw new InvalidDataException($"tokenizer.json model type '{(string?)model["type"]}': only byte-level BPE is exported");
        var size = c.VocabSize;
        var tokens = new string?[size];
        var types = new int[size];
        void Put(int id, string text, int tokenType)
        {
            if (id < 0 || id >= size) throw new InvalidDataException($"token '{text}' has id {id}, outside the model's vocab_size {size}");
            tokens[id] = text;
            types[id] = tokenType;
        }
        foreach (var (text, id) in model["vocab"]!.AsObject()) Put((int)id!, text, Normal);
        foreach (var added in json["added_tokens"]?.AsArray() ?? [])
            Put((int)added!["id"]!, (string)added["content"]!, (bool?)added["special"] == true ? Control : UserDefined);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < size; i++)
        {
            if (tokens[i] is null)
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = Unused;
            }
            if (!seen.Add(tokens[i]!)) throw new InvalidDataException($"token '{tokens[i]}' appears twice (llama.cpp needs unique token strings)");
        }
        var merges = (model["merges"]?.AsArray() ?? []).Select(m => m is JsonArray pair ? $"{(string)pair[0]!} {(string)pair[1]!}" : (string)m!).ToList();
        g.Add("tokenizer.ggml.model", "gpt2");
        g.Add("tokenizer.ggml.pre", PreTokenizer(json, log));
        g.Add("tokenizer.ggml.tokens", tokens!);
        g.Add("tokenizer.ggml.token_type", types);
        g.Add("tokenizer.ggml.merges", merges);
        if (c.BosTokenId is { } bos) g.Add("tokenizer.ggml.bos_token_id", (uint)bos);
        if (c.EosTokenId is { } eos) g.Add("tokenizer.ggml.eos_token_id", (uint)eos);
        var configPath = Path.Combine(directory, "tokenizer_config.json");
        if (File.Exists(configPath) && JsonNode.Parse(File.ReadAllText(configPath)) is JsonObject tc)
        {
            if (tc["add_bos_token"] is JsonValue addBos) g.Add("tokenizer.ggml.add_bos_token", (bool)addBos);
            if (tc["add_eos_token"] is JsonValue addEos) g.Add("tokenizer.ggml.add_eos_token", (bool)addEos);
            if (tc["chat_template"] is JsonValue template) g.Add("tokenizer.chat_template", (string)template!);
        }
    }

    /// <summary>llama.cpp's name for the pre-tokenizer: DeepSeek-V3's Split sequence is "deepseek-v3"; others fall back to "default".</summary>
    private static string PreTokenizer(JsonNode tokenizer, TextWriter log)
    {
        var patterns = (tokenizer["pre_tokenizer"]?["pretokenizers"]?.AsArray() ?? [])
            .Where(p => (string?)p?["type"] == "Split")
            .Select(p => (string?)p!["pattern"]?["Regex"])
            .ToList();
        if (patterns.SequenceEqual(DemoModel.V3PreTokenizerPatterns)) return "deepseek-v3";
        log.WriteLine("warning: the pre-tokenizer is not DeepSeek-V3's; llama.cpp will split text with its 'default' rules (token ids fed directly are unaffected)");
        return "default";
    }

    private static void Tensors(GgufWriter g, ModelConfig c, CheckpointReader r, GgufType type)
    {
        long e = c.HiddenSize, v = c.VocabSize, h = c.NumAttentionHeads, n = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, dv = c.VHeadDim;
        long lkv = c.KvLoraRank, f = c.IntermediateSize, fe = c.MoeIntermediateSize, x = c.NRoutedExperts, s = c.NSharedExperts;
        void Weight(string name, string source, params long[] shape) => g.AddTensor(name, Reversed(shape), type, o => WriteTensor(o, r, source, shape, type));
        void Float(string name, string source, params long[] shape) => g.AddTensor(name, Reversed(shape), GgufType.F32, o => WriteTensor(o, r, source, shape, GgufType.F32));

        Weight("token_embd.weight", "model.embed_tokens.weight", v, e);
        Float("output_norm.weight", "model.norm.weight", e);
        if (r.Contains("lm_head.weight")) Weight("output.weight", "lm_head.weight", v, e);
        for (var i = 0; i < c.NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}";
            var b = $"blk.{i}";
            Float($"{b}.attn_norm.weight", $"{p}.input_layernorm.weight", e);
            if (c.QLoraRank is { } lq)
            {
                Weight($"{b}.attn_q_a.weight", $"{p}.self_attn.q_a_proj.weight", lq, e);
                Float($"{b}.attn_q_a_norm.weight", $"{p}.self_attn.q_a_layernorm.weight", lq);
                Weight($"{b}.attn_q_b.weight", $"{p}.self_attn.q_b_proj.weight", h * (n + rope), lq);
            }
            else
            {
                Weight($"{b}.attn_q.weight", $"{p}.self_attn.q_proj.weight", h * (n + rope), e);
            }
            Weight($"{b}.attn_kv_a_mqa.weight", $"{p}.self_attn.kv_a_proj_with_mqa.weight", lkv + rope, e);
            Float($"{b}.attn_kv_a_norm.weight", $"{p}.self_attn.kv_a_layernorm.weight", lkv);
            // kv_b_proj [H·(n+v), c] split per head: k_b[h][r][d] = W[h(n+v)+d, r] (torch [H, c, n]); v_b[h][j][r] = W[h(n+v)+n+j, r] (torch [H, v, c]).
            var kvb = $"{p}.self_attn.kv_b_proj.weight";
            g.AddTensor($"{b}.attn_k_b.weight", [n, lkv, h], type, o => WriteValues(o, KvB(r, kvb, c, key: true), type));
            g.AddTensor($"{b}.attn_v_b.weight", [lkv, dv, h], type, o => WriteValues(o, KvB(r, kvb, c, key: false), type));
            Weight($"{b}.attn_output.weight", $"{p}.self_attn.o_proj.weight", e, h * dv);
            Float($"{b}.ffn_norm.weight", $"{p}.post_attention_layernorm.weight", e);
            if (!c.IsMoeLayer(i))
            {
                Weight($"{b}.ffn_gate.weight", $"{p}.mlp.gate_proj.weight", f, e);
                Weight($"{b}.ffn_up.weight", $"{p}.mlp.up_proj.weight", f, e);
                Weight($"{b}.ffn_down.weight", $"{p}.mlp.down_proj.weight", e, f);
                continue;
            }
            Float($"{b}.ffn_gate_inp.weight", $"{p}.mlp.gate.weight", x, e);
            if (c.TopkMethod == TopkMethod.NoAuxTc) Float($"{b}.exp_probs_b.bias", $"{p}.mlp.gate.e_score_correction_bias", x);
            foreach (var (gguf, proj, rows, cols) in new[] { ("gate", "gate_proj", fe, e), ("up", "up_proj", fe, e), ("down", "down_proj", e, fe) })
            {
                var layer = p;
                g.AddTensor($"{b}.ffn_{gguf}_exps.weight", [cols, rows, x], type, o =>
                {
                    for (var ex = 0; ex < x; ex++) WriteTensor(o, r, $"{layer}.mlp.experts.{ex}.{proj}.weight", [rows, cols], type);
                });
            }
            if (s > 0)
            {
                Weight($"{b}.ffn_gate_shexp.weight", $"{p}.mlp.shared_experts.gate_proj.weight", fe * s, e);
                Weight($"{b}.ffn_up_shexp.weight", $"{p}.mlp.shared_experts.up_proj.weight", fe * s, e);
                Weight($"{b}.ffn_down_shexp.weight", $"{p}.mlp.shared_experts.down_proj.weight", e, fe * s);
            }
        }
    }

    private static float[] KvB(CheckpointReader r, string name, ModelConfig c, bool key)
    {
        int h = c.NumAttentionHeads, n = c.QkNopeHeadDim, dv = c.VHeadDim, lat = c.KvLoraRank, per = n + dv;
        var w = r.ReadFloat32(name, (long)h * per, lat);
        var width = key ? n : dv;
        var result = new float[(long)h * width * lat];
        for (var head = 0; head < h; head++)
            for (var j = 0; j < width; j++)
                for (var col = 0; col < lat; col++)
                {
                    var value = w[((long)head * per + (key ? 0 : n) + j) * lat + col];
                    // k_b is [H, c, n] (transposed per head); v_b is [H, v, c] (as stored).
                    var at = key ? ((long)head * lat + col) * n + j : ((long)head * dv + j) * lat + col;
                    result[at] = value;
                }
        return result;
    }

    private static long[] Reversed(long[] torchShape) => torchShape.Reverse().ToArray();

    /// <summary>Writes a checkpoint tensor in <paramref name="type"/>; BF16 to BF16 is copied as stored.</summary>
    private static void WriteTensor(Stream o, CheckpointReader r, string name, long[] shape, GgufType type)
    {
        if (type == GgufType.BF16 && r.ReadBf16(name, shape) is { } raw)
        {
            o.Write(MemoryMarshal.AsBytes(raw.AsSpan()));
            return;
        }
        WriteValues(o, r.ReadFloat32(name, shape), type);
    }

    private static void WriteValues(Stream o, float[] values, GgufType type)
    {
        switch (type)
        {
            case GgufType.F32:
                o.Write(MemoryMarshal.AsBytes(values.AsSpan()));
                break;
            case GgufType.BF16:
                o.Write(SafetensorsWriter.BFloat16Bytes(values));
                break;
            default:
                var half = new ushort[values.Length];
                for (var i = 0; i < values.Length; i++) half[i] = BitConverter.HalfToUInt16Bits((Half)values[i]);
                o.Write(MemoryMarshal.AsBytes(half.AsSpan()));
                break;
        }
    }
}
