using System.Text.Json;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Runtime;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Engine.Text;

namespace MoeMesh.Gateway.Tests.Api;

public sealed class CompletionsTests : IAsyncLifetime
{
    private GatewayServer _server = null!;
    private static readonly int[] PromptIds = [5, 60, 7, 81, 9, 100, 11];

    public async Task InitializeAsync() => _server = await GatewayServer.StartAsync();
    public async Task DisposeAsync() => await _server.DisposeAsync();

    /// <summary>Greedy steps from an engine built directly on the same checkpoint.</summary>
    private static List<GreedyStep> EngineGreedy(int[] prompt, int count)
    {
        var model = DeepSeekModel.Load(GatewayServer.ModelDir, ComputeOptions.CpuDefault);
        var engine = new LlmEngine(model, new EngineOptions { KvCacheBytes = 8 << 20 }, null, null);
        var seq = engine.Add(prompt, new SamplingParams { MaxTokens = count, Temperature = 0, Logprobs = 2 });
        var steps = new List<GreedyStep>();
        while (!seq.IsFinished)
            foreach (var u in engine.Step()) steps.Add(new GreedyStep(u.TokenId!.Value, u.Logprob!.Logprob, u.Logprob.Top.ToDictionary(t => t.TokenId, t => (double)t.Logprob)));
        return steps;
    }

    private static List<int> Ids(JsonElement logprobs) =>
        logprobs.GetProperty("tokens").EnumerateArray().Select(t => int.Parse(t.GetString()!["token_id:".Length..])).ToList();

    [Fact]
    public async Task GreedyCompletion_EqualsEngineOutput()
    {
        var expected = EngineGreedy(PromptIds, 12);
        var body = await _server.PostJsonAsync("/v1/completions", new
        {
            prompt = PromptIds, max_tokens = 12, temperature = 0, logprobs = 2, return_tokens_as_token_ids = true, ignore_eos = true,
        });
        GreedyStep.AssertSame(expected, Completions.Steps(body)[0], Completions.LogprobTolerance);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(PromptIds.Length, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(12, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task LogitBias_ForcesOrBansTokens_AndLogprobsStayRaw()
    {
        object Request(int maxTokens, Dictionary<string, int>? bias) => new
        {
            prompt = PromptIds, max_tokens = maxTokens, temperature = 0, logprobs = 2, ignore_eos = true, return_tokens_as_token_ids = true, logit_bias = bias,
        };
        var plain = (await _server.PostJsonAsync("/v1/completions", Request(4, null))).GetProperty("choices")[0].GetProperty("logprobs");
        var greedy = Ids(plain)[0];

        var forced = (await _server.PostJsonAsync("/v1/completions", Request(4, new() { ["7"] = 100 }))).GetProperty("choices")[0].GetProperty("logprobs");
        Assert.All(Ids(forced), t => Assert.Equal(7, t));

        // Banning the greedy token picks the runner-up of the raw distribution, whose reported logprob is the raw one.
        var banned = (await _server.PostJsonAsync("/v1/completions", Request(1, new() { [greedy.ToString()] = -100 }))).GetProperty("choices")[0].GetProperty("logprobs");
        var rawTop = plain.GetProperty("top_logprobs")[0].EnumerateObject().OrderByDescending(p => p.Value.GetDouble()).ToList();
        Assert.Equal(rawTop[1].Name, $"token_id:{Ids(banned)[0]}");
        Close.Equal(rawTop[1].Value.GetDouble(), banned.GetProperty("token_logprobs")[0].GetDouble(), 1e-5);
    }

    [Theory]
    [InlineData(1.5, 0.5, 12)] // strong: repeats are pushed away
    [InlineData(-0.3, 0.0, 24)] // negative: repeats are rewarded
    public async Task FrequencyAndPresencePenalties_PickTheBestPenalisedCandidate(double frequency, double presence, int maxTokens)
    {
        object Request(double f, double p) => new
        {
            prompt = PromptIds, max_tokens = maxTokens, temperature = 0, logprobs = 20, ignore_eos = true, return_tokens_as_token_ids = true,
            frequency_penalty = f, presence_penalty = p,
        };
        var plain = Ids((await _server.PostJsonAsync("/v1/completions", Request(0, 0))).GetProperty("choices")[0].GetProperty("logprobs"));
        var logprobs = (await _server.PostJsonAsync("/v1/completions", Request(frequency, presence))).GetProperty("choices")[0].GetProperty("logprobs");
        var tokens = Ids(logprobs);
        Assert.NotEqual(plain, tokens);
        // Recompute every pick from the raw top-20: the penalties shift a token's logit and its logprob alike.
        var counts = new Dictionary<int, int>();
        for (var i = 0; i < tokens.Count; i++)
        {
            var candidates = logprobs.GetProperty("top_logprobs")[i].EnumerateObject()
                .ToDictionary(p => int.Parse(p.Name["token_id:".Length..]), p => p.Value.GetDouble());
            Assert.Contains(tokens[i], candidates.Keys);
            var best = candidates.MaxBy(c => c.Value - (counts.TryGetValue(c.Key, out var n) ? frequency * n + presence : 0)).Key;
            Assert.Equal(best, tokens[i]);
            counts[tokens[i]] = counts.GetValueOrDefault(tokens[i]) + 1;
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RepeatedPrompt_ReusesCachedPrefixPages_WhenOn_AndAnswersTheSame(bool caching)
    {
        await using var server = caching ? null : await GatewayServer.StartAsync("--prefix-caching", "off");
        var gateway = server ?? _server;
        var request = new
        {
            prompt = Enumerable.Range(0, 40).Select(i => 20 + 3 * i).ToArray(), max_tokens = 5, temperature = 0, logprobs = 2, ignore_eos = true,
            return_tokens_as_token_ids = true,
        };
        var before = await PrefixHitsAsync(gateway);
        var first = await gateway.PostJsonAsync("/v1/completions", request);
        var second = await gateway.PostJsonAsync("/v1/completions", request);
        // 40 prompt tokens in pages of 16: the two whole pages before the last token are reused.
        Assert.Equal(caching ? 32 : 0, await PrefixHitsAsync(gateway) - before);
        Completions.AssertSame(first, second);
    }

    private static async Task<double> PrefixHitsAsync(GatewayServer gateway) =>
        double.Parse((await gateway.Http.GetStringAsync("/metrics")).Split('\n').Single(l => l.StartsWith("moemesh_prefix_cache_hits_total ", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task StreamingAndNonStreaming_Agree()
    {
        var request = new { prompt = "The capital of France is", max_tokens = 10, temperature = 0, logprobs = 2, ignore_eos = true };
        var whole = await _server.PostJsonAsync("/v1/completions", request);
        var chunks = await _server.PostStreamAsync("/v1/completions", new
        {
            prompt = "The capital of France is", max_tokens = 10, temperature = 0, logprobs = 2, ignore_eos = true, stream = true,
            stream_options = new { include_usage = true },
        });
        var choice = whole.GetProperty("choices")[0];
        var streamed = string.Concat(chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0)
            .Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(choice.GetProperty("text").GetString(), streamed);
        var streamedTokens = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0 && c.GetProperty("choices")[0].GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString())).ToList();
        Assert.Equal(choice.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()), streamedTokens);
        Assert.Equal("length", chunks.Last(c => c.GetProperty("choices").GetArrayLength() > 0).GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(10, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task StopString_EndsTextBeforeIt()
    {
        var free = await _server.PostJsonAsync("/v1/completions", new { prompt = "Hello, world", max_tokens = 24, temperature = 0, ignore_eos = true });
        var text = free.GetProperty("choices")[0].GetProperty("text").GetString()!;
        var clean = text.Replace("\uFFFD", "");
        Assert.True(clean.Length >= 6, $"need some text to cut: '{text}'");
        var stop = clean.Substring(clean.Length / 2, 2);
        var stopped = await _server.PostJsonAsync("/v1/completions", new { prompt = "Hello, world", max_tokens = 24, temperature = 0, ignore_eos = true, stop = new[] { stop } });
        var choice = stopped.GetProperty("choices")[0];
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task SeededSampling_IsReproducible_AndNChoicesDiffer()
    {
        object Req() => new { prompt = "Once upon a time", max_tokens = 12, temperature = 1.0, top_p = 0.95, top_k = 50, seed = 1234, n = 3, ignore_eos = true };
        var a = await _server.PostJsonAsync("/v1/completions", Req());
        var b = await _server.PostJsonAsync("/v1/completions", Req());
        var textsA = a.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()).ToList();
        var textsB = b.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()).ToList();
        Assert.Equal(3, textsA.Count);
        Assert.Equal(textsA, textsB);
        Assert.True(textsA.Distinct().Count() > 1, "choices with distinct seeds should differ");
    }

    [Fact]
    public async Task Echo_PrependsPromptWithPromptLogprobs()
    {
        var body = await _server.PostJsonAsync("/v1/completions", new { prompt = "Hello there", max_tokens = 3, temperature = 0, echo = true, logprobs = 1, ignore_eos = true });
        var choice = body.GetProperty("choices")[0];
        Assert.StartsWith("Hello there", choice.GetProperty("text").GetString());
        var lp = choice.GetProperty("logprobs").GetProperty("token_logprobs");
        var promptTokens = body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(promptTokens + 3, lp.GetArrayLength());
        Assert.Equal(JsonValueKind.Null, lp[0].ValueKind);
        Assert.All(lp.EnumerateArray().Skip(1), e => Assert.True(e.GetSingle() <= 0));
    }

    /// <summary>
    /// Under echo, each token's text_offset is where its text starts in the echoed text: the prompt's tokens (the
    /// beginning-of-sequence token, which the text does not show, at 0; tokens holding parts of a character at that
    /// character) and then the generated ones, streamed or not. Every complete token's text is found at its offset.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EchoOffsets_AgreeWithTheEchoedText(bool stream)
    {
        const string prompt = "Emoji 😀🎉 and 中文 with ünïcödé";
        object Request() => new { prompt, max_tokens = 6, temperature = 0, echo = true, logprobs = 1, ignore_eos = true, stream };
        var (text, tokens, offsets) = (new System.Text.StringBuilder(), new List<string>(), new List<int>());
        var choices = stream
            ? (await _server.PostStreamAsync("/v1/completions", Request())).Select(c => c.GetProperty("choices")[0]).ToList()
            : [(await _server.PostJsonAsync("/v1/completions", Request())).GetProperty("choices")[0]];
        foreach (var c in choices)
        {
            text.Append(c.GetProperty("text").GetString());
            if (c.GetProperty("logprobs").ValueKind != JsonValueKind.Object) continue;
            tokens.AddRange(c.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!));
            offsets.AddRange(c.GetProperty("logprobs").GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()));
        }
        var echoed = text.ToString();
        Assert.StartsWith(prompt, echoed);
        Assert.Equal(tokens.Count, offsets.Count);
        Assert.Equal(0, offsets[0]);
        for (var i = 1; i < offsets.Count; i++) Assert.True(offsets[i] >= offsets[i - 1] && offsets[i] <= echoed.Length, $"offset {i}: {offsets[i]}");
        var tokenizer = HfTokenizer.Load(Path.Combine(GatewayServer.ModelDir, "tokenizer.json"));
        var promptIds = tokenizer.Encode(prompt);
        // The prompt's own tokens: ids by position after the added beginning-of-sequence token, if any.
        var first = tokens.Count - 6 - promptIds.Count;
        Assert.True(first is 0 or 1);
        var complete = 0;
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (i < first || token.Contains('\uFFFD') || tokenizer.TokenId(token) is { } id && id >= 0 && token.StartsWith("<｜")) continue;
            Assert.True(string.CompareOrdinal(echoed, offsets[i], token, 0, token.Length) == 0, $"token {i} '{token}' at {offsets[i]} in '{echoed}'");
            complete++;
        }
        Assert.True(complete >= 8, $"{complete} complete tokens checked");
        Assert.Equal(prompt.Length, offsets[first + promptIds.Count]);
    }

    [Fact]
    public async Task StreamingEcho_CarriesThePromptLogprobs_AsNonStreamingDoes()
    {
        object Request(bool stream) => new { prompt = "Hello there, the experts", max_tokens = 3, temperature = 0, echo = true, logprobs = 1, ignore_eos = true, stream };
        var whole = (await _server.PostJsonAsync("/v1/completions", Request(false))).GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs");
        var echoed = (await _server.PostStreamAsync("/v1/completions", Request(true)))[0].GetProperty("choices")[0];
        Assert.Equal("Hello there, the experts", echoed.GetProperty("text").GetString());
        var prompt = echoed.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().ToList();
        Assert.True(prompt.Count > 3, $"{prompt.Count} prompt tokens");
        Assert.Equal(JsonValueKind.Null, prompt[0].ValueKind);
        for (var i = 1; i < prompt.Count; i++)
        {
            Assert.Equal(JsonValueKind.Number, prompt[i].ValueKind);
            Close.Equal(whole[i].GetDouble(), prompt[i].GetDouble(), Completions.LogprobTolerance, $"prompt token {i}");
        }
    }

    [Fact]
    public async Task ConcurrentRequests_GetTheirSequentialOutputs()
    {
        var prompts = new[] { "Hello", "The quick brown fox", "What is two plus two?", "Numbers: 1 2 3", "Code: def add(a, b):", "Once upon a time" };
        object Request(string p) => new { prompt = p, max_tokens = 8, temperature = 0, ignore_eos = true, logprobs = 2, return_tokens_as_token_ids = true };
        var sequential = new List<JsonElement>();
        foreach (var p in prompts) sequential.Add(await _server.PostJsonAsync("/v1/completions", Request(p)));
        var concurrent = await Task.WhenAll(prompts.Select(p => _server.PostJsonAsync("/v1/completions", Request(p))));
        // Batched with others, a sequence's logits differ at float rounding only: same picks unless tied.
        for (var i = 0; i < prompts.Length; i++) Completions.AssertSame(sequential[i], concurrent[i]);
    }

    [Fact]
    public async Task PromptList_GivesOneChoicePerPrompt()
    {
        var body = await _server.PostJsonAsync("/v1/completions", new { prompt = new[] { "Hello", "World" }, max_tokens = 2, n = 2, temperature = 0 });
        Assert.Equal([0, 1, 2, 3], body.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("index").GetInt32()));
    }

    [Fact]
    public async Task Endpoints_ReportHealthModelsAndMetrics()
    {
        Assert.Equal("ok", await _server.Http.GetStringAsync("/healthz"));
        Assert.Equal("ready", await _server.Http.GetStringAsync("/readyz"));
        var models = JsonDocument.Parse(await _server.Http.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("demo", models.GetProperty("data")[0].GetProperty("id").GetString());
        await _server.PostJsonAsync("/v1/completions", new { prompt = "Hi", max_tokens = 2, ignore_eos = true });
        var metrics = await _server.Http.GetStringAsync("/metrics");
        foreach (var name in new[] { "moemesh_requests_running", "moemesh_requests_waiting", "moemesh_time_to_first_token_seconds_count",
                     "moemesh_inter_token_latency_seconds_count", "moemesh_e2e_request_latency_seconds_count", "moemesh_prompt_tokens_total",
                     "moemesh_generation_tokens_total", "moemesh_kv_cache_usage_ratio" })
            Assert.Contains(name, metrics);
        var generated = metrics.Split('\n').First(l => l.StartsWith("moemesh_generation_tokens_total "));
        Assert.True(double.Parse(generated.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) >= 2);
    }

    /// <summary>
    /// The weight bytes the gateway reports, against the checkpoint's own safetensors header: with the CPU defaults,
    /// packed weights at their stored size and the rest as float32 copies, each tensor once, the routed experts apart.
    /// </summary>
    [Fact]
    public async Task Metrics_ReportTheWeightBytesHeld()
    {
        var options = ComputeOptions.CpuDefault;
        Assert.Equal<double?>(MoeMesh.Testing.CheckpointBytes.Dense(GatewayServer.ModelDir, options.PackedDense),
            await MoeMesh.Testing.Programs.MetricAsync(_server.Http, "moemesh_weight_bytes{part=\"dense\"}"));
        Assert.Equal<double?>(MoeMesh.Testing.CheckpointBytes.Experts(GatewayServer.ModelDir, options.PackedExperts),
            await MoeMesh.Testing.Programs.MetricAsync(_server.Http, "moemesh_weight_bytes{part=\"routed_experts\"}"));
        Assert.True(await MoeMesh.Testing.Programs.MetricAsync(_server.Http, "moemesh_kv_cache_bytes") > 0);
    }
}
