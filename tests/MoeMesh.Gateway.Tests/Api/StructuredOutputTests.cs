using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using MoeMesh.Testing;
using OpenAI;
using OpenAI.Chat;

namespace MoeMesh.Gateway.Tests.Api;

/// <summary>
/// Constrained output on the random-weight demo model, whose unconstrained output is noise: with response_format
/// json_object every output is a JSON object, with json_schema every output validates against the schema (checked
/// by an independent validator), and with tool_choice required or named every output is a call whose arguments
/// validate against the function's parameters; greedy and sampled, whole and streamed, several choices, in-process
/// and with expert nodes.
/// </summary>
public sealed class StructuredOutputTests : IAsyncLifetime
{
    private GatewayServer _server = null!;

    // A nudge towards the quote and the closing brace, which the random model otherwise picks rarely, so that its
    // strings and objects end within the token budget; the mask alone still decides what is valid where.
    private Dictionary<string, int> _nudge = [];

    public async Task InitializeAsync()
    {
        _server = await GatewayServer.StartAsync();
        foreach (var text in new[] { "\"", "}", "]", "<｜tool▁calls▁end｜>" })
        {
            var ids = (await _server.PostJsonAsync("/tokenize", new { prompt = text, add_special_tokens = false })).GetProperty("tokens");
            _nudge[ids[0].GetInt32().ToString()] = 4;
        }
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private object Request(double temperature, int n, bool stream, int maxTokens = 600) => new
    {
        messages = new[] { new { role = "user", content = "Describe a cat as JSON." } },
        response_format = new { type = "json_object" },
        max_tokens = maxTokens, temperature, n, stream, seed = 5, logit_bias = _nudge,
    };

    [Theory]
    [InlineData(0.0, 1, false)]
    [InlineData(0.0, 1, true)]
    [InlineData(1.0, 4, false)]
    [InlineData(1.0, 4, true)]
    public async Task EveryOutput_IsAJsonObject(double temperature, int n, bool stream)
    {
        var outputs = stream ? await Streamed(Request(temperature, n, true)) : Whole(await _server.PostJsonAsync("/v1/chat/completions", Request(temperature, n, false)));
        Assert.Equal(n, outputs.Count);
        foreach (var (content, finish) in outputs)
        {
            Assert.Equal("stop", finish);
            using var doc = JsonDocument.Parse(content);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
    }

    /// <summary>Cut off by max_tokens inside the object: finish_reason "length", and the text so far is the object's beginning.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MaxTokensMidObject_EndsWithLength(bool schema)
    {
        var request = schema
            ? SchemaRequest(Schemas["person"], 0, 1, false, maxTokens: 3)
            : new { messages = new[] { new { role = "user", content = "JSON" } }, response_format = new { type = "json_object" }, max_tokens = 2, temperature = 0 };
        var (content, finish) = Whole(await _server.PostJsonAsync("/v1/chat/completions", request))[0];
        Assert.Equal("length", finish);
        Assert.StartsWith("{", content);
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(content));
    }

    /// <summary>Log-probabilities stay the raw distribution's: the first token's alternatives are those of an unconstrained request.</summary>
    [Fact]
    public async Task Logprobs_AreTheRawDistributions()
    {
        object Ask(bool json) => json
            ? new { messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 1, temperature = 0, logprobs = true, top_logprobs = 5, response_format = new { type = "json_object" } }
            : new { messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 1, temperature = 0, logprobs = true, top_logprobs = 5 };
        static string Top(JsonElement body) => body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content")[0].GetProperty("top_logprobs").GetRawText();
        var constrained = await _server.PostJsonAsync("/v1/chat/completions", Ask(true));
        var free = await _server.PostJsonAsync("/v1/chat/completions", Ask(false));
        Assert.Equal(Top(free), Top(constrained));
        Assert.Equal("{", constrained.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task Completions_TakeResponseFormatToo()
    {
        var body = await _server.PostJsonAsync("/v1/completions", new { prompt = "JSON:", max_tokens = 600, temperature = 0, response_format = new { type = "json_object" }, logit_bias = _nudge });
        using var doc = JsonDocument.Parse(body.GetProperty("choices")[0].GetProperty("text").GetString()!);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public async Task OpenAiClient_JsonObject()
    {
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.BaseAddress, "/v1") }).GetChatClient("demo");
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 600, Temperature = 0, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        foreach (var (id, bias) in _nudge) options.LogitBiases[int.Parse(id)] = bias;
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("A cat as JSON")], options);
        using var doc = JsonDocument.Parse(completion.Content[0].Text);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Theory]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"string","pattern":"(a)\\1"}}}}}""", "backreference")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"string","minLength":2}}}}}""", "minLength")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"integer","minimum":1}}}}}""", "minimum")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"integer"}}}""", "root")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x"}}""", "schema")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"bad name","schema":{"type":"object"}}}""", "name")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"},"extra":1}}""", "extra")]
    [InlineData("""{"type":"yaml"}""", "yaml")]
    [InlineData("""{"type":"json_object","schema":{}}""", "schema")]
    [InlineData("""["json_object"]""", "response_format")]
    public async Task UnsupportedResponseFormat_Is400NamingIt(string format, string named)
    {
        var json = $$"""{"messages":[{"role":"user","content":"Hi"}],"response_format":{{format}}}""";
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("response_format", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains(named, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    public static readonly Dictionary<string, string> Schemas = new()
    {
        ["person"] = """
            {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
             "required": ["name", "age"], "additionalProperties": false}
            """,
        ["mixed"] = """
            {"type": "object", "required": ["kind", "pos", "v", "ok"],
             "properties": {"kind": {"enum": ["cat", "dog", 7, null]},
                            "pos": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]},
                            "v": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2}]},
                            "ok": {"type": ["boolean", "null"]}}}
            """,
        ["patterns"] = """
            {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{1,3}$"}, "pet": {"type": "string", "pattern": "^(cat|dog)s?$"},
                                              "tag": {"type": "string", "pattern": "^[^0-9]{0,6}$"}},
             "required": ["code", "pet", "tag"], "additionalProperties": false}
            """,
        ["list"] = """
            {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}, "done": {"type": "boolean"}}, "required": ["id", "done"]}, "minItems": 1, "maxItems": 3}
            """,
    };

    /// <summary>Whether <paramref name="json"/> validates against <paramref name="schema"/> (JsonSchema.Net), and why not.</summary>
    public static (bool Valid, string Why) Validate(string schema, string json)
    {
        using var doc = JsonDocument.Parse(json);
        var result = Json.Schema.JsonSchema.FromText(schema).Evaluate(doc.RootElement, new Json.Schema.EvaluationOptions { OutputFormat = Json.Schema.OutputFormat.List });
        return (result.IsValid, json + ": " + string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))));
    }

    private object SchemaRequest(string schema, double temperature, int n, bool stream, int maxTokens = 600) => new
    {
        messages = new[] { new { role = "user", content = "Describe a cat." } },
        response_format = new { type = "json_schema", json_schema = new { name = "answer", strict = true, schema = JsonDocument.Parse(schema).RootElement } },
        max_tokens = maxTokens, temperature, n, stream, seed = 3, logit_bias = _nudge,
    };

    [Theory]
    [InlineData("person", 0.0, 1, false)]
    [InlineData("person", 1.0, 3, true)]
    [InlineData("mixed", 1.0, 3, false)]
    [InlineData("mixed", 0.0, 1, true)]
    [InlineData("list", 1.0, 2, false)]
    [InlineData("patterns", 1.0, 3, false)]
    [InlineData("patterns", 0.0, 1, true)]
    public async Task JsonSchema_EveryOutputValidates(string name, double temperature, int n, bool stream)
    {
        var request = SchemaRequest(Schemas[name], temperature, n, stream);
        var outputs = stream ? await Streamed(request) : Whole(await _server.PostJsonAsync("/v1/chat/completions", request));
        Assert.Equal(n, outputs.Count);
        foreach (var (content, finish) in outputs)
        {
            Assert.Equal("stop", finish);
            var (valid, why) = Validate(Schemas[name], content);
            Assert.True(valid, why);
        }
    }

    private const string WeatherParameters = """
        {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["C", "F"]}}, "required": ["city", "unit"], "additionalProperties": false}
        """;

    private const string TimeParameters = """{"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}""";

    private object ToolRequest(object toolChoice, double temperature, int n, bool stream, bool? parallel = null) => new
    {
        messages = new[] { new { role = "user", content = "Weather and time in Paris?" } },
        tools = new object[]
        {
            new { type = "function", function = new { name = "get_weather", description = "Weather", parameters = JsonDocument.Parse(WeatherParameters).RootElement } },
            new { type = "function", function = new { name = "get_time", parameters = JsonDocument.Parse(TimeParameters).RootElement } },
        },
        tool_choice = toolChoice, parallel_tool_calls = parallel,
        max_tokens = 600, temperature, n, stream, seed = 4, logit_bias = _nudge,
    };

    /// <summary>
    /// tool_choice "required" or a named function: every output is calls, finish_reason "tool_calls", no content, each
    /// call's arguments valid for its function; a named function or parallel_tool_calls false gives exactly one call.
    /// </summary>
    [Theory]
    [InlineData("required", 0.0, 1, false, null)]
    [InlineData("required", 1.0, 3, false, null)]
    [InlineData("required", 1.0, 3, true, null)]
    [InlineData("required", 1.0, 2, false, false)]
    [InlineData("get_time", 1.0, 2, false, null)]
    [InlineData("get_weather", 0.0, 1, true, null)]
    public async Task ToolChoice_EveryOutputIsValidCalls(string choice, double temperature, int n, bool stream, bool? parallel)
    {
        object toolChoice = choice == "required" ? "required" : new { type = "function", function = new { name = choice } };
        var request = ToolRequest(toolChoice, temperature, n, stream, parallel);
        var outputs = stream ? await StreamedCalls(request) : WholeCalls(await _server.PostJsonAsync("/v1/chat/completions", request));
        Assert.Equal(n, outputs.Count);
        foreach (var (content, calls, finish) in outputs)
        {
            Assert.Equal("tool_calls", finish);
            Assert.Null(content);
            Assert.NotEmpty(calls);
            if (choice != "required" || parallel == false) Assert.Single(calls);
            foreach (var (name, arguments) in calls)
            {
                if (choice != "required") Assert.Equal(choice, name);
                var (valid, why) = Validate(name == "get_weather" ? WeatherParameters : name == "get_time" ? TimeParameters : throw new Xunit.Sdk.XunitException($"unknown function {name}"), arguments);
                Assert.True(valid, why);
            }
        }
    }

    [Theory]
    [InlineData("""{"type": "function", "function": {"name": "nope"}}""", null, "nope")]
    [InlineData("""{"type": "function", "function": {}}""", null, "name")]
    [InlineData("\"required\"", """{"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}""", "format")]
    [InlineData("\"required\"", """{"type": "array"}""", "object")]
    public async Task BadToolChoice_Is400NamingIt(string choice, string? parameters, string named)
    {
        var function = parameters is null ? """{"name": "f"}""" : $$"""{"name": "f", "parameters": {{parameters}}}""";
        var json = $$"""
            {"messages": [{"role": "user", "content": "Hi"}], "tool_choice": {{choice}},
             "tools": [{"type": "function", "function": {{function}}}]}
            """;
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(named, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task RequiredToolChoice_WithResponseFormat_Is400()
    {
        var json = """
            {"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "required", "response_format": {"type": "json_object"},
             "tools": [{"type": "function", "function": {"name": "f"}}]}
            """;
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("tool_choice", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>The official OpenAI .NET client: a JSON schema response format, and required, named and streamed tool calls.</summary>
    [Fact]
    public async Task OpenAiClient_JsonSchemaAndToolChoice()
    {
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.BaseAddress, "/v1") }).GetChatClient("demo");
        var options = new ChatCompletionOptions
        {
            MaxOutputTokenCount = 600, Temperature = 0,
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("person", BinaryData.FromString(Schemas["person"]), jsonSchemaIsStrict: true),
        };
        foreach (var (id, bias) in _nudge) options.LogitBiases[int.Parse(id)] = bias;
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("A person")], options);
        var (valid, why) = Validate(Schemas["person"], completion.Content[0].Text);
        Assert.True(valid, why);

        var tools = new ChatCompletionOptions { MaxOutputTokenCount = 600, Temperature = 0, ToolChoice = ChatToolChoice.CreateRequiredChoice() };
        foreach (var (id, bias) in _nudge) tools.LogitBiases[int.Parse(id)] = bias;
        tools.Tools.Add(ChatTool.CreateFunctionTool("get_weather", "Weather", BinaryData.FromString(WeatherParameters)));
        tools.Tools.Add(ChatTool.CreateFunctionTool("get_time", "Time", BinaryData.FromString(TimeParameters)));
        ChatCompletion called = await client.CompleteChatAsync([new UserChatMessage("Weather in Paris?")], tools);
        Assert.Equal(ChatFinishReason.ToolCalls, called.FinishReason);
        Assert.NotEmpty(called.ToolCalls);
        foreach (var call in called.ToolCalls)
        {
            Assert.StartsWith("call_", call.Id);
            var (ok, reason) = Validate(call.FunctionName == "get_weather" ? WeatherParameters : TimeParameters, call.FunctionArguments.ToString());
            Assert.True(ok, reason);
        }

        // Streamed: the tool-call updates add up to the same calls.
        var names = new SortedDictionary<int, string>();
        var arguments = new SortedDictionary<int, StringBuilder>();
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Weather in Paris?")], tools))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                if (part.FunctionName is { } fn) names[part.Index] = fn;
                if (!arguments.TryGetValue(part.Index, out var sb)) arguments[part.Index] = sb = new StringBuilder();
                sb.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.Equal(called.ToolCalls.Select(c => c.FunctionName), names.Values);
        Assert.Equal(called.ToolCalls.Select(c => c.FunctionArguments.ToString()), arguments.Values.Select(a => a.ToString()));

        // Named: that function, once.
        tools.ToolChoice = ChatToolChoice.CreateFunctionChoice("get_time");
        ChatCompletion named = await client.CompleteChatAsync([new UserChatMessage("Time?")], tools);
        Assert.Equal("get_time", Assert.Single(named.ToolCalls).FunctionName);
    }

    /// <summary>vLLM's guided_choice: every output is one of the choices, greedy and sampled, whole and streamed.</summary>
    [Theory]
    [InlineData(0.0, 1, false)]
    [InlineData(1.0, 4, false)]
    [InlineData(1.0, 4, true)]
    public async Task GuidedChoice_EveryOutputIsOneOfTheChoices(double temperature, int n, bool stream)
    {
        string[] choices = ["positive", "negative", "neutral", "🙂 mixed"];
        var request = new { messages = new[] { new { role = "user", content = "Sentiment?" } }, guided_choice = choices, max_tokens = 50, temperature, n, stream, seed = 9 };
        var outputs = stream ? await Streamed(request) : Whole(await _server.PostJsonAsync("/v1/chat/completions", request));
        Assert.Equal(n, outputs.Count);
        Assert.All(outputs, o => Assert.Contains(o.Content, choices));
        Assert.All(outputs, o => Assert.Equal("stop", o.Finish));
    }

    /// <summary>vLLM's guided_regex: every output matches the whole expression (checked with .NET's regex engine).</summary>
    [Theory]
    [InlineData(0.0, 1, false)]
    [InlineData(1.0, 4, false)]
    [InlineData(1.0, 4, true)]
    public async Task GuidedRegex_EveryOutputMatches(double temperature, int n, bool stream)
    {
        const string regex = "(yes|no|maybe)( [0-9]{1,3})?";
        var request = new { prompt = "Answer:", guided_regex = regex, max_tokens = 50, temperature, n, stream, seed = 2 };
        var outputs = stream ? await StreamedText(request) : (await _server.PostJsonAsync("/v1/completions", request)).GetProperty("choices").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, c.GetProperty("finish_reason").GetString())).ToList();
        Assert.Equal(n, outputs.Count);
        Assert.All(outputs, o => Assert.Matches("^(?:" + regex + ")\\z", o.Item1));
        Assert.All(outputs, o => Assert.Equal("stop", o.Item2));
    }

    /// <summary>
    /// Where the expression is matched but could go on, the end-of-sequence token stays allowed: pushed up by
    /// logit_bias, it ends every output there; everywhere else the mask keeps it out.
    /// </summary>
    [Fact]
    public async Task GuidedRegex_MayEndWhereTheExpressionIsMatched()
    {
        using var config = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(GatewayServer.ModelDir, "config.json")));
        var eos = config.RootElement.GetProperty("eos_token_id").GetInt32();
        var request = new { prompt = "Answer:", guided_regex = "(yes|no|maybe)( [0-9]{1,3})?", max_tokens = 50, temperature = 1.0, n = 4, seed = 3,
            logit_bias = new Dictionary<string, int> { [eos.ToString()] = 100 } };
        var choices = (await _server.PostJsonAsync("/v1/completions", request)).GetProperty("choices").EnumerateArray().ToList();
        Assert.All(choices, c => Assert.Contains(c.GetProperty("text").GetString(), new[] { "yes", "no", "maybe" }));
        Assert.All(choices, c => Assert.Equal("stop", c.GetProperty("finish_reason").GetString()));
    }

    [Theory]
    [InlineData(""" "guided_regex": "(a)\\1" """, "guided_regex")]
    [InlineData(""" "guided_regex": 5 """, "guided_regex")]
    [InlineData(""" "guided_regex": "a", "guided_choice": ["a"] """, "guided_regex")]
    [InlineData(""" "guided_regex": "a", "response_format": {"type": "json_object"} """, "guided_regex")]
    public async Task BadGuidedRegex_Is400(string fields, string param)
    {
        var json = $$"""{"prompt": "Hi", {{fields}} }""";
        var response = await _server.Http.PostAsync("/v1/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(param, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Theory]
    [InlineData("""["yes", "yes please"]""")]
    [InlineData("""["a", "a"]""")]
    [InlineData("""[]""")]
    [InlineData("""[""]""")]
    [InlineData("""[1, 2]""")]
    public async Task BadGuidedChoice_Is400(string choices)
    {
        var json = $$"""{"messages":[{"role":"user","content":"Hi"}],"guided_choice":{{choices}}}""";
        var response = await _server.Http.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("guided_choice", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>With the experts on nodes, the constrained output is the in-process gateway's, token for token.</summary>
    [Fact]
    public async Task WithExpertNodes_TheOutputIsTheInProcessOnes()
    {
        var request = Request(0, 1, false, maxTokens: 120);
        var expected = Whole(await _server.PostJsonAsync("/v1/chat/completions", request));
        var schemaRequest = SchemaRequest(Schemas["mixed"], 1.0, 2, false, maxTokens: 120);
        var schemaExpected = Whole(await _server.PostJsonAsync("/v1/chat/completions", schemaRequest));
        var toolsRequest = ToolRequest("required", 0.0, 1, false);
        var toolsExpected = Describe(WholeCalls(await _server.PostJsonAsync("/v1/chat/completions", toolsRequest)));
        Assert.Contains("get_", toolsExpected);
        var nodes = await Task.WhenAll(new[] { "0-7", "8-15" }.Select(h => ExpertNodeProcess.StartAsync(GatewayServer.ModelDir, h)));
        try
        {
            await using var gateway = await GatewayServer.StartWithNodesAsync(GatewayServer.ModelDir, nodes);
            Assert.Equal(expected, Whole(await gateway.PostJsonAsync("/v1/chat/completions", request)));
            Assert.Equal(schemaExpected, Whole(await gateway.PostJsonAsync("/v1/chat/completions", schemaRequest)));
            Assert.Equal(toolsExpected, Describe(WholeCalls(await gateway.PostJsonAsync("/v1/chat/completions", toolsRequest))));
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    private static List<(string? Content, List<(string Name, string Arguments)> Calls, string? Finish)> WholeCalls(JsonElement body) =>
        body.GetProperty("choices").EnumerateArray().Select(c =>
        {
            var m = c.GetProperty("message");
            var calls = m.TryGetProperty("tool_calls", out var tc) ? tc.EnumerateArray().Select(t => (t.GetProperty("function").GetProperty("name").GetString()!, t.GetProperty("function").GetProperty("arguments").GetString()!)).ToList() : [];
            return (m.GetProperty("content").GetString(), calls, c.GetProperty("finish_reason").GetString());
        }).ToList();

    /// <summary>A streamed response's choices: content (null when no text came; the first chunk's "" is none), the tool-call deltas gathered by index, and finish_reason.</summary>
    private async Task<List<(string? Content, List<(string Name, string Arguments)> Calls, string? Finish)>> StreamedCalls(object request)
    {
        var content = new SortedDictionary<int, StringBuilder?>();
        var calls = new SortedDictionary<int, SortedDictionary<int, (string Name, StringBuilder Arguments)>>();
        var finish = new Dictionary<int, string?>();
        foreach (var chunk in await _server.PostStreamAsync("/v1/chat/completions", request))
        {
            if (!chunk.TryGetProperty("choices", out var choices)) continue;
            foreach (var c in choices.EnumerateArray())
            {
                var index = c.GetProperty("index").GetInt32();
                content.TryAdd(index, null);
                calls.TryAdd(index, []);
                var delta = c.GetProperty("delta");
                if (delta.TryGetProperty("content", out var d) && d.GetString() is { Length: > 0 }) (content[index] ??= new StringBuilder()).Append(d.GetString());
                if (delta.TryGetProperty("tool_calls", out var tc))
                    foreach (var t in tc.EnumerateArray())
                    {
                        var at = t.GetProperty("index").GetInt32();
                        var f = t.GetProperty("function");
                        if (!calls[index].TryGetValue(at, out var call)) calls[index][at] = call = (f.GetProperty("name").GetString()!, new StringBuilder());
                        if (f.TryGetProperty("arguments", out var a)) call.Arguments.Append(a.GetString());
                    }
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish[index] = c.GetProperty("finish_reason").GetString();
            }
        }
        return content.Select(p => (p.Value?.ToString(), calls[p.Key].Values.Select(v => (v.Name, v.Arguments.ToString())).ToList(), finish.GetValueOrDefault(p.Key))).ToList();
    }

    /// <summary>The choices' content, calls (name and arguments; ids are random) and finish_reason, as one string to compare.</summary>
    private static string Describe(List<(string? Content, List<(string Name, string Arguments)> Calls, string? Finish)> choices) =>
        string.Join("\n", choices.Select(c => $"{c.Content} | {string.Join(" ; ", c.Calls.Select(x => $"{x.Name}({x.Arguments})"))} | {c.Finish}"));

    /// <summary>A streamed /v1/completions response's choices: their text and finish_reason.</summary>
    private async Task<List<(string, string?)>> StreamedText(object request)
    {
        var text = new SortedDictionary<int, StringBuilder>();
        var finish = new Dictionary<int, string?>();
        foreach (var chunk in await _server.PostStreamAsync("/v1/completions", request))
        {
            if (!chunk.TryGetProperty("choices", out var choices)) continue;
            foreach (var c in choices.EnumerateArray())
            {
                var index = c.GetProperty("index").GetInt32();
                if (!text.TryGetValue(index, out var sb)) text[index] = sb = new StringBuilder();
                sb.Append(c.GetProperty("text").GetString());
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish[index] = c.GetProperty("finish_reason").GetString();
            }
        }
        return text.Select(p => (p.Value.ToString(), finish.GetValueOrDefault(p.Key))).ToList();
    }

    private static List<(string Content, string? Finish)> Whole(JsonElement body) =>
        body.GetProperty("choices").EnumerateArray()
            .Select(c => (c.GetProperty("message").GetProperty("content").GetString()!, c.GetProperty("finish_reason").GetString())).ToList();

    private async Task<List<(string Content, string? Finish)>> Streamed(object request)
    {
        var text = new SortedDictionary<int, StringBuilder>();
        var finish = new Dictionary<int, string?>();
        foreach (var chunk in await _server.PostStreamAsync("/v1/chat/completions", request))
        {
            if (!chunk.TryGetProperty("choices", out var choices)) continue;
            foreach (var c in choices.EnumerateArray())
            {
                var index = c.GetProperty("index").GetInt32();
                if (!text.TryGetValue(index, out var sb)) text[index] = sb = new StringBuilder();
                if (c.GetProperty("delta").TryGetProperty("content", out var d) && d.ValueKind == JsonValueKind.String) sb.Append(d.GetString());
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish[index] = c.GetProperty("finish_reason").GetString();
            }
        }
        return text.Select(p => (p.Value.ToString(), finish.GetValueOrDefault(p.Key))).ToList();
    }
}
