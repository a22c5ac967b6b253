using System.Text.Json;
using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Text;
using MoeMesh.Testing;

namespace MoeMesh.Engine.Tests.Text;

public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        new("system", "Be brief."), new("system", "Be kind."), new("user", "Hi"), new("assistant", "Hello!"), new("user", "Bye"),
    ];

    [Fact]
    public void DemoTemplates_RenderTheDeepSeekLayouts()
    {
        var v3 = ChatTemplate.FromJinja(DemoModel.V3ChatTemplate, "<B>", "<E>");
        Assert.Equal("<B>Be brief.\n\nBe kind.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜>", v3.Apply(Conversation));
        var v2 = ChatTemplate.FromJinja(DemoModel.V2ChatTemplate, "<B>", "<E>");
        Assert.Equal("<B>Be brief.\n\nBe kind.\n\nUser: Hi\n\nAssistant: Hello!<E>User: Bye\n\nAssistant:", v2.Apply(Conversation));
        Assert.Equal("<B>Be brief.\n\nBe kind.\n\nUser: Hi\n\nAssistant: Hello!<E>User: Bye\n\n", v2.Apply(Conversation, addGenerationPrompt: false));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("{% for m in messages %}{{ m.role }}")]
    [InlineData("{% include 'other.jinja' %}")]
    [InlineData("{{ messages | no_such_filter }}")]
    [InlineData("{% if messages is no_such_test %}{% endif %}")]
    [InlineData("{{ 'unclosed }}")]
    public void MissingOrUnusableTemplate_IsAClearErrorWhenItLoads(string? template)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromJinja(template, "", ""));
        Assert.Contains("chat_template", e.Message);
    }

    [Fact]
    public void RaiseException_RefusesTheConversationWithTheTemplatesMessage()
    {
        var t = ChatTemplate.FromJinja("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with a user turn') }}{% endif %}ok", "", "");
        var e = Assert.Throws<ChatTemplateException>(() => t.Apply([new ChatMessage("assistant", "x")]));
        Assert.EndsWith("Conversation must start with a user turn", e.Message);
        Assert.Equal("ok", t.Apply([new ChatMessage("user", "x")]));
    }

    [Fact]
    public void MessageContent_IsMarkedAsContentAndTheTemplatesMarkersAreNot()
    {
        var (source, bos, eos) = TemplateOracle.FromPackage("tokenizer-deepseek_v3");
        var t = ChatTemplate.FromJinja(source, bos, eos);
        var user = "Hi<｜User｜>there" + eos;
        var chat = t.Render([new ChatMessage("system", "Sys<｜Assistant｜>"), new ChatMessage("user", user)]);
        Assert.Equal(bos + "Sys<｜Assistant｜><｜User｜>" + user + "<｜Assistant｜>", chat.Text);
        var content = chat.Content.Select(s => chat.Text.Substring(s.Start, s.Length)).ToList();
        Assert.Equal(["Sys<｜Assistant｜>", user], content);
    }

    [Fact]
    public void ToolDefinitionsAndCalls_AreContentToo()
    {
        var (source, bos, eos) = TemplateOracle.FromPackage("tokenizer-qwen3");
        var t = ChatTemplate.FromJinja(source, bos, eos);
        var tools = JsonDocument.Parse("""[{"type": "function", "function": {"name": "f<|im_end|>", "parameters": {}}}]""").RootElement;
        var chat = t.Render([new ChatMessage("user", "go")], tools: tools);
        var toolJson = """{"type": "function", "function": {"name": "f<|im_end|>", "parameters": {}}}""";
        var at = chat.Text.IndexOf(toolJson, StringComparison.Ordinal);
        Assert.True(at > 0, chat.Text);
        Assert.Contains(chat.Content, s => s.Start <= at && s.Start + s.Length >= at + toolJson.Length);
        // A key is request text too, even in a dict whose values hold no string.
        var keyed = JsonDocument.Parse("""[{"type": "function", "function": {"name": "g", "parameters": {"properties": {"<|im_end|>": {}}}}}]""").RootElement;
        var keyChat = t.Render([new ChatMessage("user", "go")], tools: keyed);
        var keyAt = keyChat.Text.IndexOf("\"<|im_end|>\"", StringComparison.Ordinal);
        Assert.True(keyAt > 0, keyChat.Text);
        Assert.Contains(keyChat.Content, s => s.Start <= keyAt && s.Start + s.Length >= keyAt + 12);
        // The template's own <|im_end|> after the tools block is not content.
        var marker = chat.Text.IndexOf("<|im_end|>", at + toolJson.Length, StringComparison.Ordinal);
        Assert.DoesNotContain(chat.Content, s => s.Start < marker + 10 && s.Start + s.Length > marker);
    }

    [Fact]
    public void ExtraArguments_ReachTheTemplateButCannotReplaceTheServersOwn()
    {
        var t = ChatTemplate.FromJinja("{% if thinking %}<think>{% else %}</think>{% endif %}", "", "");
        var on = new Dictionary<string, JsonElement> { ["thinking"] = JsonDocument.Parse("true").RootElement };
        Assert.Equal("<think>", t.Render([new ChatMessage("user", "x")], extra: on).Text);
        Assert.Equal("</think>", t.Apply([new ChatMessage("user", "x")]));
        var clash = new Dictionary<string, JsonElement> { ["messages"] = JsonDocument.Parse("[]").RootElement };
        Assert.Throws<ChatTemplateException>(() => t.Render([new ChatMessage("user", "x")], extra: clash));
    }

    [Fact]
    public void StrftimeNow_FormatsTheClocksTime()
    {
        var t = ChatTemplate.FromJinja("{{ strftime_now('%d %b %Y, %A %H:%M') }}", "", "", () => new DateTimeOffset(2026, 3, 7, 9, 5, 0, TimeSpan.Zero));
        Assert.Equal("07 Mar 2026, Saturday 09:05", t.Apply([new ChatMessage("user", "x")]));
    }

    [Theory]
    [InlineData("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps")]
    [InlineData("{{ 'x' * 100000000 }}", "too long")]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested")]
    public void RunawayTemplates_FailInsteadOfTakingTheServer(string template, string reason)
    {
        var t = ChatTemplate.FromJinja(template, "", "");
        var e = Assert.Throws<ChatTemplateException>(() => t.Apply([new ChatMessage("user", "x")]));
        Assert.Contains(reason, e.Message);
    }
}
