using MoeMesh.Engine.Demo;
using MoeMesh.Engine.Text;

namespace MoeMesh.Engine.Tests.Text;

public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        new("system", "Be brief."), new("system", "Be kind."), new("user", "Hi"), new("assistant", "Hello!"), new("user", "Bye"),
    ];

    [Fact]
    public void DeepSeekV3Template_RendersAsTheJinjaTemplateWould()
    {
        var t = ChatTemplate.FromJinja(DemoModel.V3ChatTemplate, "<B>", "<E>");
        Assert.Equal("<B>Be brief.\n\nBe kind.<｜User｜>Hi<｜Assistant｜>Hello!<E><｜User｜>Bye<｜Assistant｜>", t.Apply(Conversation));
    }

    [Fact]
    public void DeepSeekV2Template_RendersAsTheJinjaTemplateWould()
    {
        var t = ChatTemplate.FromJinja(DemoModel.V2ChatTemplate, "<B>", "<E>");
        Assert.Equal("<B>Be brief.\n\nBe kind.\n\nUser: Hi\n\nAssistant: Hello!<E>User: Bye\n\nAssistant:", t.Apply(Conversation));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}")]
    public void UnknownOrMissingTemplate_IsAClearError(string? template)
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromJinja(template, "", ""));
        Assert.Contains("chat_template", e.Message);
    }

    [Fact]
    public void UnsupportedRole_IsAClearError()
    {
        var t = ChatTemplate.FromJinja(DemoModel.V3ChatTemplate, "", "");
        Assert.Throws<ChatTemplateException>(() => t.Apply([new ChatMessage("tool", "x")]));
    }
}
