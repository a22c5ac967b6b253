using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Engine.Checkpoint;
using MoeMesh.Engine.Text;
using TorchSharp;

namespace MoeMesh.Engine.Demo;

/// <summary>
/// Writes a seeded DeepSeek-shaped checkpoint in the Hugging Face layout: config.json,
/// model.safetensors, tokenizer.json and tokenizer_config.json.
/// </summary>
public static class DemoModel
{
    public const string Bos = "<｜begin▁of▁sentence｜>";
    public const string Eos = "<｜end▁of▁sentence｜>";

    /// <summary>DeepSeek-V3's pre-tokenizer regexes (tokenizer.json, Sequence of Isolated Splits).</summary>
    public static readonly string[] V3PreTokenizerPatterns =
    [
        @"\p{N}{1,3}",
        "[一-龥\u3040-ゟ゠-ヿ]+",
        @"[!""#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ];

    /// <summary>DeepSeek-V3's chat template as its tokenizer_config.json holds it (tool calls and tool results included).</summary>
    public const string V3ChatTemplate =
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}" +
        "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}" +
        "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}" +
        "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}" +
        "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}" +
        "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}" +
        "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}";

    /// <summary>DeepSeek-V2's chat template.</summary>
    public const string V2ChatTemplate =
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}" +
        "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}" +
        "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}" +
        "{% elif message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}" +
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

    /// <summary>How projection weights are stored.</summary>
    public enum WeightFormat
    {
        BF16,
        F32,
        /// <summary>float8 e4m3 with 128x128 block scales, as DeepSeek-V3 ships.</summary>
        FP8,
    }

    /// <summary>Writes the checkpoint into <paramref name="directory"/> (created if needed).</summary>
    public static void Write(string directory, DemoShape shape, long seed, WeightFormat format = WeightFormat.BF16)
    {
        System.IO.Directory.CreateDirectory(directory);
        var (vocabSize, specials) = WriteTokenizer(directory, shape);
        var modelVocab = shape.Vocab ?? vocabSize;
        WriteConfig(directory, shape, modelVocab, specials);
        var tensors = Tensors(shape, modelVocab, seed);
        SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), Encode(tensors, format).ToList(),
            new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>
    /// The built-in demo model that the gateway and the expert nodes serve without --model: generated once into
    /// <paramref name="cacheRoot"/>, identical in every process (one seed), so that nodes and gateways agree.
    /// </summary>
    public static string BuiltIn(string cacheRoot) => EnsureCached(cacheRoot, DemoShape.Tiny, seed: 1);

    /// <summary>The default cache folder: $XDG_CACHE_HOME/moemesh, else ~/.cache/moemesh.</summary>
    public static string DefaultCacheRoot()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : xdg;
        return Path.Combine(root, "moemesh");
    }

    /// <summary>Generates the demo checkpoint once into a cache folder and returns its path.</summary>
    public static string EnsureCached(string cacheRoot, DemoShape shape, long seed)
    {
        var dir = Path.Combine(cacheRoot, $"demo-{shape.ModelType}-h{shape.Hidden}-l{shape.Layers}-e{shape.Experts}-v{shape.Vocab}-seed{seed}-v2");
        if (File.Exists(Path.Combine(dir, "model.safetensors"))) return dir;
        var staging = dir + $".tmp-{Environment.ProcessId}";
        Write(staging, shape, seed);
        try
        {
            System.IO.Directory.Move(staging, dir);
        }
        catch (IOException) when (File.Exists(Path.Combine(dir, "model.safetensors")))
        {
            // Another process finished first; its copy is identical.
            System.IO.Directory.Delete(staging, recursive: true);
        }
        return dir;
    }

    /// <summary>The weights as float32, name → (shape, values), drawn from one seeded generator.</summary>
    public static List<(string Name, long[] Shape, float[] Values)> Tensors(DemoShape s, int vocab, long seed)
    {
        var g = new torch.Generator((ulong)seed);
        var list = new List<(string, long[], float[])>();
        void Add(string name, float std, float mean, params long[] shp)
        {
            // Scalars held in locals (and the alpha rooted): a temporary one may be finalized while libtorch reads it.
            using var scale = std.ToScalar();
            using var shift = mean.ToScalar();
            using var drawn = torch.randn(shp, generator: g);
            using var scaled = drawn.mul(scale);
            using var t = scaled.add(shift, Model.Scalars.One);
            list.Add((name, shp, t.data<float>().ToArray()));
        }
        void Linear(string name, int outDim, int inDim) => Add(name, 1f / MathF.Sqrt(inDim), 0, outDim, inDim);
        void Norm(string name, int dim) => Add(name, 0.1f, 1, dim);
        void Mlp(string p, int width)
        {
            Linear($"{p}.gate_proj.weight", width, s.Hidden);
            Linear($"{p}.up_proj.weight", width, s.Hidden);
            Linear($"{p}.down_proj.weight", s.Hidden, width);
        }

        Add("model.embed_tokens.weight", 1, 0, vocab, s.Hidden);
        var qk = s.NopeDim + s.RopeDim;
        for (var l = 0; l < s.Layers; l++)
        {
            var p = $"model.layers.{l}";
            Norm($"{p}.input_layernorm.weight", s.Hidden);
            Norm($"{p}.post_attention_layernorm.weight", s.Hidden);
            if (s.QLoraRank is { } q)
            {
                Linear($"{p}.self_attn.q_a_proj.weight", q, s.Hidden);
                Norm($"{p}.self_attn.q_a_layernorm.weight", q);
                Linear($"{p}.self_attn.q_b_proj.weight", s.Heads * qk, q);
            }
            else
            {
                Linear($"{p}.self_attn.q_proj.weight", s.Heads * qk, s.Hidden);
            }
            Linear($"{p}.self_attn.kv_a_proj_with_mqa.weight", s.KvLoraRank + s.RopeDim, s.Hidden);
            Norm($"{p}.self_attn.kv_a_layernorm.weight", s.KvLoraRank);
            Linear($"{p}.self_attn.kv_b_proj.weight", s.Heads * (s.NopeDim + s.VDim), s.KvLoraRank);
            Linear($"{p}.self_attn.o_proj.weight", s.Hidden, s.Heads * s.VDim);
            if (l < s.FirstDense)
            {
                Mlp($"{p}.mlp", s.Intermediate);
                continue;
            }
            Linear($"{p}.mlp.gate.weight", s.Experts, s.Hidden);
            if (s.TopkMethod == "noaux_tc") Add($"{p}.mlp.gate.e_score_correction_bias", 0.1f, 0, s.Experts);
            for (var e = 0; e < s.Experts; e++) Mlp($"{p}.mlp.experts.{e}", s.ExpertWidth);
            if (s.SharedExperts > 0) Mlp($"{p}.mlp.shared_experts", s.ExpertWidth * s.SharedExperts);
        }
        Norm("model.norm.weight", s.Hidden);
        if (!s.TieEmbeddings) Add("lm_head.weight", 2f / MathF.Sqrt(s.Hidden), 0, vocab, s.Hidden);
        return list;
    }

    /// <summary>Serialises float32 tensors; with FP8, 2-D projection weights get block scales.</summary>
    public static IEnumerable<SafetensorsWriter.Entry> Encode(IEnumerable<(string Name, long[] Shape, float[] Values)> tensors, WeightFormat format)
    {
        foreach (var (name, shape, values) in tensors)
        {
            if (format == WeightFormat.FP8 && name.EndsWith("_proj.weight", StringComparison.Ordinal))
            {
                var (q, scales) = Fp8Quantiser.Quantise(values, (int)shape[0], (int)shape[1]);
                yield return new(name, DType.F8E4M3, shape, q);
                yield return new(name + "_scale_inv", DType.F32, [scales.Rows, scales.Cols], SafetensorsWriter.Float32Bytes(scales.Values));
            }
            else if (format == WeightFormat.BF16)
            {
                yield return new(name, DType.BF16, shape, SafetensorsWriter.BFloat16Bytes(values));
            }
            else
            {
                yield return new(name, DType.F32, shape, SafetensorsWriter.Float32Bytes(values));
            }
        }
    }

    private static (int VocabSize, (int Bos, int Eos)) WriteTokenizer(string directory, DemoShape shape)
    {
        var pre = new SplitSequencePreTokenizer(V3PreTokenizerPatterns.Select(SplitSequencePreTokenizer.Compile).ToList());
        var (vocab, merges) = BpeTrainer.Train(DemoCorpus.Text, pre, maxMerges: 700);
        var added = new (string Content, bool Special)[] { (Bos, true), (Eos, true), ("<｜User｜>", false), ("<｜Assistant｜>", false) };
        var bos = vocab.Count;
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(added.Select((a, i) => (JsonNode)new JsonObject
            {
                ["id"] = vocab.Count + i, ["content"] = a.Content, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = true, ["special"] = a.Special,
            }).ToArray()),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(V3PreTokenizerPatterns.Select(p => (JsonNode)new JsonObject
                {
                    ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = p }, ["behavior"] = "Isolated", ["invert"] = false,
                }).Append(new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }).ToArray()),
            },
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = new JsonObject(vocab.Select((t, i) => KeyValuePair.Create(t, (JsonNode?)i))),
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), json.ToJsonString());
        var config = new JsonObject
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["bos_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = Bos },
            ["eos_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = Eos },
            ["model_max_length"] = 16384,
            ["tokenizer_class"] = "LlamaTokenizerFast",
            ["chat_template"] = shape.ModelType == "deepseek_v2" ? V2ChatTemplate : V3ChatTemplate,
        };
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return (vocab.Count + added.Length, (bos, bos + 1));
    }

    private static void WriteConfig(string directory, DemoShape s, int vocab, (int Bos, int Eos) specials)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(s.ModelType == "deepseek_v3" ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"),
            ["model_type"] = s.ModelType,
            ["vocab_size"] = vocab,
            ["hidden_size"] = s.Hidden,
            ["intermediate_size"] = s.Intermediate,
            ["moe_intermediate_size"] = s.ExpertWidth,
            ["num_hidden_layers"] = s.Layers,
            ["num_nextn_predict_layers"] = 0,
            ["num_attention_heads"] = s.Heads,
            ["num_key_value_heads"] = s.Heads,
            ["q_lora_rank"] = s.QLoraRank,
            ["kv_lora_rank"] = s.KvLoraRank,
            ["qk_nope_head_dim"] = s.NopeDim,
            ["qk_rope_head_dim"] = s.RopeDim,
            ["v_head_dim"] = s.VDim,
            ["n_routed_experts"] = s.Experts,
            ["n_shared_experts"] = s.SharedExperts,
            ["num_experts_per_tok"] = s.TopK,
            ["n_group"] = s.Groups,
            ["topk_group"] = s.TopkGroups,
            ["topk_method"] = s.TopkMethod,
            ["scoring_func"] = s.ScoringFunc,
            ["norm_topk_prob"] = s.NormTopkProb,
            ["routed_scaling_factor"] = s.RoutedScalingFactor,
            ["first_k_dense_replace"] = s.FirstDense,
            ["moe_layer_freq"] = 1,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = s.MaxPositions,
            ["rope_theta"] = 10000.0,
            ["rope_scaling"] = new JsonObject
            {
                ["type"] = "yarn", ["factor"] = s.RopeFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositions,
                ["beta_fast"] = 32, ["beta_slow"] = 1, ["mscale"] = 1.0, ["mscale_all_dim"] = 1.0,
            },
            ["rms_norm_eps"] = 1e-6,
            ["tie_word_embeddings"] = s.TieEmbeddings,
            ["bos_token_id"] = specials.Bos,
            ["eos_token_id"] = specials.Eos,
            ["torch_dtype"] = "bfloat16",
        };
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
