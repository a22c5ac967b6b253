using MoeMesh.Engine.Config;

namespace MoeMesh.Engine.Tests.Config;

public sealed class ModelConfigTests
{
    private const string V3 = """
        {"model_type":"deepseek_v3","vocab_size":129280,"hidden_size":7168,"intermediate_size":18432,"moe_intermediate_size":2048,
         "num_hidden_layers":61,"num_attention_heads":128,"q_lora_rank":1536,"kv_lora_rank":512,"qk_nope_head_dim":128,
         "qk_rope_head_dim":64,"v_head_dim":128,"n_routed_experts":256,"n_shared_experts":1,"num_experts_per_tok":8,"n_group":8,
         "topk_group":4,"topk_method":"noaux_tc","scoring_func":"sigmoid","norm_topk_prob":true,"routed_scaling_factor":2.5,
         "first_k_dense_replace":3,"moe_layer_freq":1,"rope_theta":10000,"max_position_embeddings":163840,
         "rope_scaling":{"type":"yarn","factor":40,"original_max_position_embeddings":4096,"beta_fast":32,"beta_slow":1,"mscale":1.0,"mscale_all_dim":1.0},
         "rms_norm_eps":1e-6,"tie_word_embeddings":false,"bos_token_id":0,"eos_token_id":1,"some_unused_key":{"x":1}}
        """;

    [Fact]
    public void DeepSeekV3Config_IsRead()
    {
        var c = ModelConfig.Parse(V3);
        Assert.Equal(576, c.LatentCacheDim);
        Assert.Equal(TopkMethod.NoAuxTc, c.TopkMethod);
        Assert.Equal(ScoringFunc.Sigmoid, c.ScoringFunc);
        Assert.Equal(40, c.RopeScaling!.Factor);
        Assert.False(c.IsMoeLayer(2));
        Assert.True(c.IsMoeLayer(3));
    }

    [Fact]
    public void NullQLoraRank_MeansPlainQProj() =>
        Assert.Null(ModelConfig.Parse(V3.Replace("\"q_lora_rank\":1536", "\"q_lora_rank\":null")).QLoraRank);

    [Theory]
    [InlineData("\"topk_method\":\"noaux_tc\"", "\"topk_method\":\"magic\"", "topk_method")]
    [InlineData("\"scoring_func\":\"sigmoid\"", "\"scoring_func\":\"tanh\"", "scoring_func")]
    [InlineData("\"type\":\"yarn\"", "\"type\":\"dynamic\"", "rope_scaling.type")]
    [InlineData("\"hidden_size\":7168,", "", "hidden_size")]
    [InlineData("\"kv_lora_rank\":512", "\"kv_lora_rank\":\"big\"", "kv_lora_rank")]
    public void UnsupportedValue_IsRejectedNamingTheKey(string from, string to, string key)
    {
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(V3.Replace(from, to)));
        Assert.Contains(key, e.Message);
    }
}
