using System.Diagnostics;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Text;

namespace MoeMesh.Bench;

/// <summary>
/// The engine's tokenizer against Hugging Face's (its Rust core, run by node from tests/oracle after test.sh's npm ci)
/// on DeepSeek-V3's real tokenizer.json: one long prompt of mixed text (prose, code, numbers, CJK, emoji, astral math
/// letters), encoded in each, medians of the rounds; whether the ids agree. Then DeepSeek-V3's chat template rendering
/// a long conversation in the engine and in Hugging Face's Jinja (@huggingface/jinja).
/// </summary>
public static class TokenizerBenchmark
{
    public static void Run(string repository, int rounds)
    {
        var oracle = Path.Combine(repository, "tests", "oracle");
        var tokenizerJson = Path.Combine(oracle, "node_modules", "@lenml", "tokenizer-deepseek_v3", "models", "tokenizer.json");
        if (!File.Exists(tokenizerJson)) throw new FileNotFoundException("run test.sh (or npm ci in tests/oracle) first", tokenizerJson);
        var text = LongPrompt();
        var file = Path.Combine(Directory.CreateTempSubdirectory("moemesh-tokenizer-bench-").FullName, "prompt.txt");
        File.WriteAllText(file, text);

        var load = Stopwatch.StartNew();
        var tokenizer = HfTokenizer.Load(tokenizerJson);
        Console.WriteLine($"engine tokenizer: loaded in {load.Elapsed.TotalMilliseconds:F0} ms");
        var ids = tokenizer.Encode(text);
        var times = Timed(rounds, () => tokenizer.Encode(text));
        var reply = Node(oracle, "time-encode.mjs", tokenizerJson, file, rounds.ToString());
        var theirs = reply.GetProperty("ms").EnumerateArray().Select(e => e.GetDouble()).ToList();
        var theirTokens = reply.GetProperty("tokens").GetInt32();

        var (ours, hf) = (Stats.Median(times), Stats.Median(theirs));
        Console.WriteLine($"prompt: {text.Length} UTF-16 units, {Encoding.UTF8.GetByteCount(text)} bytes; {ids.Count} tokens here, {theirTokens} by Hugging Face's tokenizers");
        Console.WriteLine($"encode, median of {rounds}: engine {ours:F1} ms ({ids.Count / ours * 1000:F0} tokens/s), Hugging Face's tokenizers {hf:F1} ms ({theirTokens / hf * 1000:F0} tokens/s); ratio {hf / ours:F2}x");
        RenderChat(oracle, Path.Combine(Path.GetDirectoryName(tokenizerJson)!, "tokenizer_config.json"), rounds);
    }

    /// <summary>The checkpoint's chat template on a 200-message conversation with tool calls: render time here and in the npm engine.</summary>
    private static void RenderChat(string oracle, string configFile, int rounds)
    {
        var config = TokenizerConfig.Load(configFile);
        var messages = new List<ChatMessage> { new("system", "You are a helpful assistant. " + string.Concat(Enumerable.Repeat("Be precise. ", 20))) };
        var call = JsonDocument.Parse("""[{"type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}]""").RootElement;
        for (var i = 0; i < 50; i++)
        {
            messages.Add(new ChatMessage("user", $"Question {i}: " + string.Concat(Enumerable.Repeat("what about 中文 and emoji 😀? ", 15))));
            messages.Add(new ChatMessage("assistant", null, new Dictionary<string, JsonElement> { ["tool_calls"] = call }));
            messages.Add(new ChatMessage("tool", $"result {i}: " + string.Concat(Enumerable.Repeat("data ", 40))));
            messages.Add(new ChatMessage("assistant", $"Answer {i}: " + string.Concat(Enumerable.Repeat("a long answer with words. ", 15))));
        }
        var template = ChatTemplate.FromJinja(config.ChatTemplate, config.BosToken ?? "", config.EosToken ?? "");
        var text = template.Apply(messages);
        var times = Timed(rounds, () => template.Render(messages));

        var request = Path.Combine(Directory.CreateTempSubdirectory("moemesh-render-bench-").FullName, "request.json");
        File.WriteAllText(request, JsonSerializer.Serialize(new
        {
            template = config.ChatTemplate,
            variables = new
            {
                messages = messages.Select(m => m.Fields is { } f && f.TryGetValue("tool_calls", out var c)
                    ? (object)new { role = m.Role, content = m.Content, tool_calls = c }
                    : new { role = m.Role, content = m.Content }),
                add_generation_prompt = true, bos_token = config.BosToken, eos_token = config.EosToken, tools = (object?)null,
            },
        }));
        var reply = Node(oracle, "time-render.mjs", request, rounds.ToString());
        var (ours, theirs) = (Stats.Median(times), Stats.Median(reply.GetProperty("ms").EnumerateArray().Select(e => e.GetDouble()).ToList()));
        Console.WriteLine($"chat template: {messages.Count} messages, {text.Length} characters rendered here, {reply.GetProperty("chars").GetInt32()} by @huggingface/jinja");
        Console.WriteLine($"render, median of {rounds}: engine {ours:F2} ms, @huggingface/jinja {theirs:F2} ms; ratio {theirs / ours:F2}x");
    }

    /// <summary>Each round's milliseconds.</summary>
    private static List<double> Timed(int rounds, Action work)
    {
        var times = new List<double>();
        for (var i = 0; i < rounds; i++)
        {
            var sw = Stopwatch.StartNew();
            work();
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        return times;
    }

    /// <summary>Runs one of tests/oracle's timing scripts with node and parses the JSON line it prints.</summary>
    private static JsonElement Node(string oracle, params string[] args)
    {
        var info = new ProcessStartInfo("node") { WorkingDirectory = oracle, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var node = Process.Start(info)!;
        var reply = JsonDocument.Parse(node.StandardOutput.ReadToEnd()).RootElement;
        node.WaitForExit();
        return reply;
    }

    /// <summary>About 400 KB of mixed text, built from fixed pieces (the same in every run).</summary>
    private static string LongPrompt()
    {
        string[] pieces =
        [
            "The quick brown fox jumps over the lazy dog, again and again; ",
            "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n",
            "Numbers 1234567890, 3.14159 and 2,718,281 in a row. ",
            "中文字符和日本語のひらがなカタカナ、한국어 문장도 있습니다。",
            "Emoji 😀🎉👍🏽 and flags 🇫🇷🇯🇵, family 👨‍👩‍👧‍👦. ",
            "Math 𝑥 + 𝑦 = 𝑧, 𝔄𝔅 and 𝟙𝟚𝟛. ",
            "   whitespace\t\truns\n\n\n",
        ];
        var text = new StringBuilder();
        for (var i = 0; text.Length < 400_000; i++) text.Append(pieces[i * 7919 % pieces.Length]);
        return text.ToString();
    }
}
