using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Text;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>vLLM's /tokenize and /detokenize: the ids the model is prompted with, counted as the generation routes count them.</summary>
public sealed class TokenizeTests : IAsyncLifetime
{
    private GatewayServer _server = null!;
    private static readonly HfTokenizer Tokenizer = HfTokenizer.Load(Path.Combine(GatewayServer.ModelDir, "tokenizer.json"));

    public async Task InitializeAsync() => _server = await GatewayServer.StartAsync();
    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static int[] Ids(JsonElement body) => body.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();

    /// <summary>A prompt's ids are the tokenizer's (the beginning-of-sequence token first, as completions add it) and as many as completions' usage counts.</summary>
    [Theory]
    [InlineData("/tokenize")]
    [InlineData("/v1/tokenize")]
    public async Task Prompt_TokenizesAsCompletionsCountIt(string path)
    {
        const string prompt = "The quick brown fox 😀 jumps over 12345 lazy dogs.";
        var body = await _server.PostJsonAsync(path, new { prompt, return_token_strs = true });
        var ids = Ids(body);
        var completion = await _server.PostJsonAsync("/v1/completions", new { prompt, max_tokens = 1 });
        Assert.Equal(completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), body.GetProperty("count").GetInt32());
        Assert.Equal(ids.Length, body.GetProperty("count").GetInt32());
        var bos = ids.Length - Tokenizer.Encode(prompt).Count;
        Assert.True(bos is 0 or 1);
        Assert.Equal(Tokenizer.Encode(prompt), ids.Skip(bos));
        Assert.Equal(ids.Select(Tokenizer.TokenText), body.GetProperty("token_strs").EnumerateArray().Select(s => s.GetString()));
        Assert.True(body.GetProperty("max_model_len").GetInt32() > 0);

        var plain = await _server.PostJsonAsync(path, new { prompt, add_special_tokens = false });
        Assert.Equal(Tokenizer.Encode(prompt), Ids(plain));
        Assert.Equal(JsonValueKind.Null, plain.GetProperty("token_strs").ValueKind);
    }

    /// <summary>Messages tokenize as the chat route prompts the model: the same count as its usage.</summary>
    [Fact]
    public async Task Messages_TokenizeAsChatCountsThem()
    {
        var messages = new object[] { new { role = "system", content = "Be brief." }, new { role = "user", content = "Hi there 𝑥" } };
        var body = await _server.PostJsonAsync("/tokenize", new { messages });
        var chat = await _server.PostJsonAsync("/v1/chat/completions", new { messages, max_tokens = 1 });
        Assert.Equal(chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), body.GetProperty("count").GetInt32());
        Assert.Contains("Hi there 𝑥", Tokenizer.Decode(Ids(body), skipSpecialTokens: false));
    }

    /// <summary>Ids decode back to the text, special tokens kept.</summary>
    [Fact]
    public async Task Detokenize_GivesTheTextBack()
    {
        const string text = "round trip: 中文, emoji 🎉 and code x = 1";
        var ids = Tokenizer.Encode(text);
        var body = await _server.PostJsonAsync("/detokenize", new { tokens = ids });
        Assert.Equal(text, body.GetProperty("prompt").GetString());
    }

    [Theory]
    [InlineData("/tokenize", """{"prompt":5}""", "prompt")]
    [InlineData("/tokenize", """{}""", "prompt")]
    [InlineData("/tokenize", """{"prompt":"Hi","max_tokens":3}""", "max_tokens")]
    [InlineData("/tokenize", """{"prompt":"Hi \ud83d"}""", "prompt")]
    [InlineData("/tokenize", """{"messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":"no"}""", "add_generation_prompt")]
    [InlineData("/tokenize", """{"messages":[{"role":"user","content":"Hi"}],"add_special_tokens":true}""", "add_special_tokens")]
    [InlineData("/detokenize", """{"tokens":[1,-1]}""", "tokens")]
    [InlineData("/detokenize", """{"tokens":[99999999]}""", "tokens")]
    [InlineData("/detokenize", """{"tokens":"1 2"}""", "tokens")]
    [InlineData("/detokenize", """{}""", "tokens")]
    [InlineData("/detokenize", """{"tokens":[1],"prompt":"x"}""", "prompt")]
    public async Task BadRequest_Is400NamingTheField(string path, string json, string param)
    {
        var response = await _server.Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(param, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task TooManyIds_Is400()
    {
        var models = await _server.Http.GetFromJsonAsync<JsonElement>("/v1/models");
        var limit = models.GetProperty("data")[0].GetProperty("max_model_len").GetInt32();
        var response = await _server.PostAsync("/detokenize", new { tokens = Enumerable.Repeat(5, limit + 1).ToArray() });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }
}
