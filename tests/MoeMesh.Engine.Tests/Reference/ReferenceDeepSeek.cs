using System.Text.Json;
using MoeMesh.Engine.Checkpoint;

namespace MoeMesh.Engine.Tests.Reference;

/// <summary>
/// An independent float64 DeepSeek-V2/V3 forward pass in plain loops, written from the equations of
/// DeepSeek's reference inference/model.py and Hugging Face's modeling code (not from the engine).
/// Reads config.json itself; uses the engine only to read tensor values from the safetensors files.
/// </summary>
public sealed class ReferenceDeepSeek
{
    private readonly JsonElement _cfg;
    private readonly CheckpointReader _reader;
    private readonly Dictionary<string, (float[] W, int Rows, int Cols)> _cache = new();

    public ReferenceDeepSeek(string modelDir)
    {
        _cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(modelDir, "config.json"))).RootElement;
        _reader = new CheckpointReader(modelDir);
    }

    private int I(string k) => _cfg.GetProperty(k).GetInt32();
    private double D(string k) => _cfg.GetProperty(k).GetDouble();
    private int? OptI(string k) => _cfg.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    private (float[] W, int Rows, int Cols) T(string name)
    {
        if (_cache.TryGetValue(name, out var t)) return t;
        var shape = ShapeOf(name);
        var w = _reader.ReadFloat32(name, shape);
        t = (w, (int)shape[0], shape.Length > 1 ? (int)shape[1] : 1);
        _cache[name] = t;
        return t;
    }

    private long[] ShapeOf(string name)
    {
        using var file = SafetensorsFile.Open(Path.Combine(_reader.Directory, "model.safetensors"));
        return file.Tensors[name].Shape;
    }

    private double[] Linear(string name, double[] x)
    {
        var (w, rows, cols) = T(name);
        var y = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            double s = 0;
            for (var c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
            y[r] = s;
        }
        return y;
    }

    private double[] RmsNorm(string name, double[] x)
    {
        var (w, _, _) = T(name);
        var ms = x.Sum(v => v * v) / x.Length;
        var inv = 1 / Math.Sqrt(ms + D("rms_norm_eps"));
        return x.Select((v, i) => v * inv * w[i]).ToArray();
    }

    private static double Silu(double v) => v / (1 + Math.Exp(-v));

    private double[] Mlp(string p, double[] x)
    {
        var g = Linear($"{p}.gate_proj.weight", x);
        var u = Linear($"{p}.up_proj.weight", x);
        return Linear($"{p}.down_proj.weight", g.Select((v, i) => Silu(v) * u[i]).ToArray());
    }

    private static double Mscale(double scale, double m) => scale <= 1 ? 1 : 0.1 * m * Math.Log(scale) + 1;

    /// <summary>Rotation angles per rope pair for a position, YaRN-corrected when configured.</summary>
    private (double[] Cos, double[] Sin) Rope(int pos)
    {
        var dim = I("qk_rope_head_dim");
        var b = D("rope_theta");
        var freqs = new double[dim / 2];
        for (var i = 0; i < dim / 2; i++) freqs[i] = 1.0 / Math.Pow(b, 2.0 * i / dim);
        var amplitude = 1.0;
        if (_cfg.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
        {
            var factor = rs.GetProperty("factor").GetDouble();
            var orig = rs.GetProperty("original_max_position_embeddings").GetDouble();
            double CorrDim(double rot) => dim * Math.Log(orig / (rot * 2 * Math.PI)) / (2 * Math.Log(b));
            var low = Math.Max(Math.Floor(CorrDim(rs.GetProperty("beta_fast").GetDouble())), 0);
            var high = Math.Min(Math.Ceiling(CorrDim(rs.GetProperty("beta_slow").GetDouble())), dim - 1);
            if (low == high) high += 0.001;
            for (var i = 0; i < dim / 2; i++)
            {
                var smooth = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
                freqs[i] = freqs[i] / factor * (1 - smooth) + freqs[i] * smooth;
            }
            amplitude = Mscale(factor, rs.GetProperty("mscale").GetDouble()) / Mscale(factor, rs.GetProperty("mscale_all_dim").GetDouble());
        }
        return (freqs.Select(f => Math.Cos(pos * f) * amplitude).ToArray(), freqs.Select(f => Math.Sin(pos * f) * amplitude).ToArray());
    }

    /// <summary>Interleaved-pair rotation: (x[2i], x[2i+1]) as a complex number times e^{i·angle}.</summary>
    private static void Rotate(double[] v, int offset, (double[] Cos, double[] Sin) r)
    {
        for (var i = 0; i < r.Cos.Length; i++)
        {
            var a = v[offset + 2 * i];
            var b = v[offset + 2 * i + 1];
            v[offset + 2 * i] = a * r.Cos[i] - b * r.Sin[i];
            v[offset + 2 * i + 1] = a * r.Sin[i] + b * r.Cos[i];
        }
    }

    private double SoftmaxScale()
    {
        var scale = 1 / Math.Sqrt(I("qk_nope_head_dim") + I("qk_rope_head_dim"));
        if (_cfg.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object)
        {
            var m = rs.GetProperty("mscale_all_dim").GetDouble();
            if (m != 0)
            {
                var s = Mscale(rs.GetProperty("factor").GetDouble(), m);
                scale *= s * s;
            }
        }
        return scale;
    }

    private double[][] Attention(int layer, double[][] xs)
    {
        var p = $"model.layers.{layer}.self_attn";
        int h = I("num_attention_heads"), nope = I("qk_nope_head_dim"), rope = I("qk_rope_head_dim"), vd = I("v_head_dim"), c = I("kv_lora_rank");
        var qk = nope + rope;
        var n = xs.Length;
        var q = new double[n][];
        var latent = new double[n][];
        var kpe = new double[n][];
        for (var t = 0; t < n; t++)
        {
            q[t] = OptI("q_lora_rank") is > 0
                ? Linear($"{p}.q_b_proj.weight", RmsNorm($"{p}.q_a_layernorm.weight", Linear($"{p}.q_a_proj.weight", xs[t])))
                : Linear($"{p}.q_proj.weight", xs[t]);
            var r = Rope(t);
            for (var head = 0; head < h; head++) Rotate(q[t], head * qk + nope, r);
            var kv = Linear($"{p}.kv_a_proj_with_mqa.weight", xs[t]);
            latent[t] = RmsNorm($"{p}.kv_a_layernorm.weight", kv[..c]);
            kpe[t] = kv[c..];
            Rotate(kpe[t], 0, r);
        }
        var kvb = latent.Select(l => Linear($"{p}.kv_b_proj.weight", l)).ToArray(); // per token [h * (nope + vd)]
        var scale = SoftmaxScale();
        var outputs = new double[n][];
        for (var t = 0; t < n; t++)
        {
            var concat = new double[h * vd];
            for (var head = 0; head < h; head++)
            {
                var scores = new double[t + 1];
                for (var j = 0; j <= t; j++)
                {
                    double s = 0;
                    for (var d = 0; d < nope; d++) s += q[t][head * qk + d] * kvb[j][head * (nope + vd) + d];
                    for (var d = 0; d < rope; d++) s += q[t][head * qk + nope + d] * kpe[j][d];
                    scores[j] = s * scale;
                }
                var max = scores.Max();
                var e = scores.Select(s => Math.Exp(s - max)).ToArray();
                var z = e.Sum();
                for (var j = 0; j <= t; j++)
                    for (var d = 0; d < vd; d++)
                        concat[head * vd + d] += e[j] / z * kvb[j][head * (nope + vd) + nope + d];
            }
            outputs[t] = Linear($"{p}.o_proj.weight", concat);
        }
        return outputs;
    }

    private double[] Moe(int layer, double[] x)
    {
        var p = $"model.layers.{layer}.mlp";
        int experts = I("n_routed_experts"), k = I("num_experts_per_tok"), groups = I("n_group"), keepGroups = I("topk_group");
        var method = _cfg.GetProperty("topk_method").GetString();
        var logits = Linear($"{p}.gate.weight", x);
        var scores = _cfg.GetProperty("scoring_func").GetString() == "sigmoid"
            ? logits.Select(v => 1 / (1 + Math.Exp(-v))).ToArray()
            : Softmax(logits);
        var choice = (double[])scores.Clone();
        if (method == "noaux_tc")
        {
            var (bias, _, _) = T($"{p}.gate.e_score_correction_bias");
            for (var e = 0; e < experts; e++) choice[e] += bias[e];
        }
        var allowed = Enumerable.Range(0, experts).ToHashSet();
        if (method != "greedy")
        {
            var per = experts / groups;
            var groupScore = Enumerable.Range(0, groups).Select(g =>
            {
                var members = choice.Skip(g * per).Take(per).OrderByDescending(v => v).ToArray();
                return method == "noaux_tc" ? members.Take(2).Sum() : members[0];
            }).ToArray();
            var kept = Enumerable.Range(0, groups).OrderByDescending(g => groupScore[g]).Take(keepGroups).ToHashSet();
            allowed = Enumerable.Range(0, experts).Where(e => kept.Contains(e / per)).ToHashSet();
        }
        var chosen = allowed.OrderByDescending(e => choice[e]).Take(k).ToArray();
        var weights = chosen.Select(e => scores[e]).ToArray();
        var norm = _cfg.GetProperty("norm_topk_prob").GetBoolean() && k > 1;
        var scaling = D("routed_scaling_factor");
        if (norm) weights = weights.Select(w => w / weights.Sum()).ToArray();
        if (_cfg.GetProperty("model_type").GetString() == "deepseek_v3" || !norm) weights = weights.Select(w => w * scaling).ToArray();
        var y = new double[x.Length];
        for (var i = 0; i < chosen.Length; i++)
        {
            var o = Mlp($"{p}.experts.{chosen[i]}", x);
            for (var d = 0; d < y.Length; d++) y[d] += weights[i] * o[d];
        }
        if (I("n_shared_experts") > 0)
        {
            var s = Mlp($"{p}.shared_experts", x);
            for (var d = 0; d < y.Length; d++) y[d] += s[d];
        }
        return y;
    }

    private static double[] Softmax(double[] v)
    {
        var max = v.Max();
        var e = v.Select(x => Math.Exp(x - max)).ToArray();
        var z = e.Sum();
        return e.Select(x => x / z).ToArray();
    }

    /// <summary>Logits for every position of the token sequence.</summary>
    public double[][] Forward(IReadOnlyList<int> tokens)
    {
        var (embed, _, hidden) = T("model.embed_tokens.weight");
        var xs = tokens.Select(t => embed.AsSpan(t * hidden, hidden).ToArray().Select(v => (double)v).ToArray()).ToArray();
        for (var layer = 0; layer < I("num_hidden_layers"); layer++)
        {
            var p = $"model.layers.{layer}";
            var attn = Attention(layer, xs.Select(x => RmsNorm($"{p}.input_layernorm.weight", x)).ToArray());
            for (var t = 0; t < xs.Length; t++)
            {
                var h = xs[t].Select((v, i) => v + attn[t][i]).ToArray();
                var normed = RmsNorm($"{p}.post_attention_layernorm.weight", h);
                var isMoe = layer >= I("first_k_dense_replace") && layer % I("moe_layer_freq") == 0;
                var f = isMoe ? Moe(layer, normed) : Mlp($"{p}.mlp", normed);
                xs[t] = h.Select((v, i) => v + f[i]).ToArray();
            }
        }
        var head = _reader.TensorNames.Contains("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
        return xs.Select(x => Linear(head, RmsNorm("model.norm.weight", x))).ToArray();
    }
}
