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
    // Each loop iteration starts from the enclosing scope: a set in the body does not carry over (a namespace does).
    [InlineData("{% set x = 1 %}{% for i in range(3) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}", "2221")]
    [InlineData("{% set ns = namespace(x=1) %}{% for i in range(3) %}{% set ns.x = ns.x + 1 %}{{ ns.x }}{% endfor %}", "234")]
    // select and reject (Llama 3.1's templates), a test's list argument without parentheses.
    [InlineData("{{ ['a', 'code_interpreter', 'b'] | reject('equalto', 'code_interpreter') | join(', ') }}|{{ [0, 1, 2, 3] | select('odd') | join }}|{{ 'y' if 'a' is in ['a', 'b'] }}", "a, b|13|y")]
    // String escapes as Python reads them; line endings read as '\n'.
    [InlineData("{{ '\\u2581x\\x41\\s' }}", "\u2581xA\\s")]
    [InlineData("{% if true %}\r\na\r\n{% endif %}\r\nb", "a\nb")]
    // split keeps the remainder whole; tojson with indent 0 breaks lines; repr quotes as Python.
    [InlineData("{{ 'a b  c  '.split(none, 1)[1] }}|{{ [1] | tojson(indent=0) }}|{{ [\"it's\", 'a\\nb'] }}", "b  c  |[\n1\n]|[\"it's\", 'a\\nb']")]
    // A method comes before an item of the same name, a subscript the other way round; round to tens.
    [InlineData("{% set s = {'items': {'type': 'string'}} %}{% for k, v in s.items() %}{{ k }}{% endfor %}|{{ s['items']['type'] }}|{{ 1234 | round(-1) }}", "items|string|1230.0")]
    public void Renders_AsPythonJinja(string template, string expected)
    {
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>(), DateTimeOffset.UnixEpoch).Text);
    }

    [Theory]
    [InlineData("{{ 1 + 'a' }}")]
    [InlineData("{{ 'a' - 1 }}")]
    [InlineData("{{ none + 1 }}")]
    [InlineData("{% break %}")]
    [InlineData("{{ [1, 'a'] | sort }}")]
    [InlineData("{{ 'ab' * 4611686018427387904 }}")]
    [InlineData("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}")]
    [InlineData("{{ 'abc'[1::9223372036854775807] }}x{{ 1 // 0 }}")]
    [InlineData("{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s + 'xxxxxxxxxx' %}{% endfor %}")]
    public void TypeErrors_FailAsInPython(string template)
    {
        // A JinjaException (a template's failure), never another exception type.
        Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>(), DateTimeOffset.UnixEpoch));
    }

    [Theory]
    [InlineData(200)]
    [InlineData(100)]
    public void DeepNesting_IsRefusedWhenParsed_NotAStackOverflow(int depth)
    {
        var expression = "{{ " + new string('(', depth * 2) + "1" + new string(')', depth * 2) + " }}";
        var statements = string.Concat(Enumerable.Repeat("{% if true %}", depth * 2)) + string.Concat(Enumerable.Repeat("{% endif %}", depth * 2));
        Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(expression));
        Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(statements));
        Assert.Throws<JinjaException>(() => JinjaTemplate.Parse("{{ 99999999999999999999 }}"));
    }

    [Fact]
    public void InfiniteNumbersFromTheRequest_AreWrittenAsPythonsJson()
    {
        var values = new Dictionary<string, object?> { ["p"] = JinjaValues.FromJson(System.Text.Json.JsonDocument.Parse("""{"max": 1e999, "min": -1e999, "x": 1.0, "y": 1e16}""").RootElement) };
        Assert.Equal("""{"max": Infinity, "min": -Infinity, "x": 1.0, "y": 1e+16}""", JinjaTemplate.Parse("{{ p | tojson }}").Render(values, DateTimeOffset.UnixEpoch).Text);
    }

    /// <summary>Floats print as Python's repr prints them (the values Python 3 gives).</summary>
    [Theory]
    [InlineData(1e16, "1e+16")]
    [InlineData(1.5e-05, "1.5e-05")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(123.45, "123.45")]
    [InlineData(2.0, "2.0")]
    [InlineData(-1e22, "-1e+22")]
    [InlineData(0.30000000000000004, "0.30000000000000004")]
    [InlineData(12345678901234567.0, "1.2345678901234568e+16")]
    [InlineData(1e-7, "1e-07")]
    [InlineData(100.0, "100.0")]
    [InlineData(-0.0, "-0.0")]
    public void Floats_PrintAsPythonRepr(double value, string expected) => Assert.Equal(expected, JinjaValues.Float(value));
}
