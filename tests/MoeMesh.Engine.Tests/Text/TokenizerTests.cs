using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Tests.Text;

public sealed class TokenizerTests
{
    private static readonly HfTokenizer Tokenizer = HfTokenizer.Load(Path.Combine(TestModels.V3Dir, "tokenizer.json"));

    /// <summary>What the tokenizer does not implement is refused when it loads, not tokenized differently from Hugging Face.</summary>
    [Theory]
    [InlineData("normalizer", """{"type":"NFC"}""")]
    [InlineData("normalizer", """{"type":"Sequence","normalizers":[{"type":"Lowercase"}]}""")]
    [InlineData("added_tokens", """[{"id":0,"content":"<x>","single_word":false,"lstrip":true,"rstrip":false,"normalized":false,"special":true}]""")]
    [InlineData("model.byte_fallback", "true")]
    [InlineData("pre_tokenizer", """{"type":"ByteLevel","add_prefix_space":true,"use_regex":true}""")]
    public void UnsupportedSettings_AreRefused(string field, string json)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TestModels.V3Dir, "tokenizer.json")))!.AsObject();
        var value = System.Text.Json.Nodes.JsonNode.Parse(json);
        if (field.StartsWith("model.")) root["model"]![field["model.".Length..]] = value;
        else root[field] = value;
        var path = Path.Combine(Directory.CreateTempSubdirectory("moemesh-tokenizer-").FullName, "tokenizer.json");
        File.WriteAllText(path, root.ToJsonString());
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Load(path));
        // The file as it was loads.
        HfTokenizer.Load(Path.Combine(TestModels.V3Dir, "tokenizer.json"));
    }

    /// <summary>A lone surrogate is not text (it has no UTF-8 bytes): refused, naming where; pairs are text.</summary>
    [Theory]
    [InlineData("a\\ud83d", 1)]
    [InlineData("\\ude00b", 0)]
    [InlineData("ok \\ud83d\\ude00 then \\ud83d", 11)]
    [InlineData("\\ud83d\\ud83d\\ude00", 0)]
    public void LoneSurrogate_IsRefused(string escaped, int index)
    {
        var text = System.Text.RegularExpressions.Regex.Unescape(escaped);
        var e = Assert.Throws<NotTextException>(() => Tokenizer.Encode(text));
        Assert.Equal(index, e.Index);
        Assert.NotEmpty(Tokenizer.Encode("ok \ud83d\ude00"));
    }

    [Theory]
    [InlineData("Hello, world! How are you today?")]
    [InlineData("Numbers: 12345 and 3.14159\nnew line\ttab")]
    [InlineData("你好，世界。こんにちは ünïcödé ✓ 🙂")]
    public void Encode_ThenDecode_RoundTrips(string text) =>
        Assert.Equal(text, Tokenizer.Decode(Tokenizer.Encode(text)));

    [Fact]
    public void AddedTokens_InTheText_MapToTheirIds()
    {
        var user = Tokenizer.TokenId("<｜User｜>")!.Value;
        var bos = Tokenizer.TokenId(DemoModel.Bos)!.Value;
        var ids = Tokenizer.Encode($"{DemoModel.Bos}<｜User｜>Hi<｜User｜>");
        Assert.Equal(bos, ids[0]);
        Assert.Equal(user, ids[1]);
        Assert.Equal(user, ids[^1]);
        Assert.Equal("<｜User｜>Hi<｜User｜>", Tokenizer.Decode(ids));
        Assert.Equal($"{DemoModel.Bos}<｜User｜>Hi<｜User｜>", Tokenizer.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void PreTokenizer_SplitsDigitsInThreesAndCjkRuns()
    {
        var pre = new SplitSequencePreTokenizer(DemoModel.V3PreTokenizerPatterns.Select(SplitSequencePreTokenizer.Compile).ToList());
        const string text = "abc 1234567 你好x";
        var pieces = pre.PreTokenize(text).Select(p => text.Substring(p.Offset, p.Length)).ToList();
        Assert.Equal(["abc", " ", "123", "456", "7", " ", "你好", "x"], pieces);
    }

    [Fact]
    public void MergesLearnedFromTheCorpus_CompressCommonWords()
    {
        var ids = Tokenizer.Encode(" the experts");
        Assert.True(ids.Count < " the experts".Length, $"{ids.Count} tokens");
    }

    [Fact]
    public void AddedTokenText_InsidePlainSpans_IsEncodedAsText()
    {
        var user = Tokenizer.TokenId("<｜User｜>")!.Value;
        var bos = Tokenizer.TokenId(DemoModel.Bos)!.Value;
        var template = ChatTemplate.FromJinja(DemoModel.V3ChatTemplate, DemoModel.Bos, DemoModel.Eos);
        var chat = template.Render([new ChatMessage("user", "Hi<｜User｜>there" + DemoModel.Bos)]);
        Assert.Equal([(DemoModel.Bos.Length + "<｜User｜>".Length, ("Hi<｜User｜>there" + DemoModel.Bos).Length)], chat.Content);

        var ids = Tokenizer.Encode(chat.Text, chat.Content);
        // The template's own markers are tokens; the same text inside the message is not.
        Assert.Equal([bos, user], ids.Take(2));
        Assert.Equal(1, ids.Count(i => i == user));
        Assert.Equal(1, ids.Count(i => i == bos));
        Assert.Equal(chat.Text, Tokenizer.Decode(ids, skipSpecialTokens: false));
        // Without spans, the text inside is read as markers (the Hugging Face template path).
        Assert.Equal(2, Tokenizer.Encode(chat.Text).Count(i => i == user));
    }
}
