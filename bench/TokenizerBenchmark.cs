using System.Diagnostics;
using System.Text;
using System.Text.Json;
using MoeMesh.Engine.Text;

namespace MoeMesh.Bench;

/// <summary>
/// The engine's tokenizer against Hugging Face's (its Rust core, run by node from tests/oracle after test.sh's npm ci)
/// on DeepSeek-V3's real tokenizer.json: one long prompt of mixed text (prose, code, numbers, CJK, emoji, astral math
/// letters), encoded in each, medians of the rounds; whether the ids agree.
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
        var times = new List<double>();
        for (var i = 0; i < rounds; i++)
        {
            var sw = Stopwatch.StartNew();
            tokenizer.Encode(text);
            times.Add(sw.Elapsed.TotalMilliseconds);
        }

        var info = new ProcessStartInfo("node") { WorkingDirectory = oracle, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "time-encode.mjs", tokenizerJson, file, rounds.ToString() }) info.ArgumentList.Add(a);
        using var node = Process.Start(info)!;
        var reply = JsonDocument.Parse(node.StandardOutput.ReadToEnd()).RootElement;
        node.WaitForExit();
        var theirs = reply.GetProperty("ms").EnumerateArray().Select(e => e.GetDouble()).ToList();
        var theirTokens = reply.GetProperty("tokens").GetInt32();

        var (ours, hf) = (Stats.Median(times), Stats.Median(theirs));
        Console.WriteLine($"prompt: {text.Length} UTF-16 units, {Encoding.UTF8.GetByteCount(text)} bytes; {ids.Count} tokens here, {theirTokens} by Hugging Face's tokenizers");
        Console.WriteLine($"encode, median of {rounds}: engine {ours:F1} ms ({ids.Count / ours * 1000:F0} tokens/s), Hugging Face's tokenizers {hf:F1} ms ({theirTokens / hf * 1000:F0} tokens/s); ratio {hf / ours:F2}x");
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
