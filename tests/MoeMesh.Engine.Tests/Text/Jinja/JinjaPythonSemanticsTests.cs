using MoeMesh.Engine.Text.Jinja;

namespace MoeMesh.Engine.Tests.Text.Jinja;

/// <summary>
/// Where @huggingface/jinja departs from Python's Jinja2, which transformers (and so vLLM) renders chat templates
/// with, the engine follows Python; these cases pin that down with Python's output.
/// </summary>
public sealed class JinjaPythonSemanticsTests
{
    [Theory]
    // str.strip/lstrip/rstrip take the characters to strip (Qwen3's template strips only '\n'); the npm engine ignores them.
    [InlineData("{{ 'xxhixx'.strip('x') }}|{{ '  \\n\\nab\\n '.strip('\\n') }}|{{ '\\n\\n  ab'.lstrip('\\n') }}|{{ 'ab  \\n'.rstrip('\\n') }}", "hi|  \n\nab\n |  ab|ab  ")]
    // Python prints booleans, None and lists its own way.
    [InlineData("{{ 1 < 2 }}{{ 1 > 2 }}{{ none }}{{ ['a', 1] }}{{ {'k': 'v'} }}", "TrueFalseNone['a', 1]{'k': 'v'}")]
    // Output written before break stays written; an else block runs only when there was no iteration at all.
    [InlineData("{% for i in range(5) %}{{ i }}{% if i == 2 %}{% break %}{% endif %}{% endfor %}", "012")]
    [InlineData("{% for i in range(3) %}{% continue %}{% else %}none{% endfor %}.", ".")]
    // Python's modulo and floor division follow the divisor's sign.
    [InlineData("{{ 7 % -3 }} {{ -7 % 3 }} {{ -7 // 2 }} {{ 7.5 % 2 }}", "-2 2 -4 1.5")]
    // A test's single argument may follow without parentheses; strings iterate by character; reverse works on strings.
    [InlineData("{{ 'y' if 'a' is equalto 'a' }}{% for c in 'abc' %}{{ c }}-{% endfor %}{{ 'abc' | reverse }}", "ya-b-c-cba")]
    // capitalize lowers the rest; title capitalises each word.
    [InlineData("{{ 'hELLO wORLD' | capitalize }}|{{ 'hELLO wORLD' | title }}", "Hello world|Hello World")]
    public void Renders_AsPythonJinja(string template, string expected)
    {
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>(), DateTimeOffset.UnixEpoch).Text);
    }

    [Theory]
    [InlineData("{{ 1 + 'a' }}")]
    [InlineData("{{ 'a' - 1 }}")]
    [InlineData("{{ none + 1 }}")]
    [InlineData("{% break %}")]
    public void TypeErrors_FailAsInPython(string template)
    {
        Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>(), DateTimeOffset.UnixEpoch));
    }
}
