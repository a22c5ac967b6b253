using System.Text.Json;
using System.Text.Json.Nodes;
using MoeMesh.Engine.Text.Jinja;
using MoeMesh.Testing;

namespace MoeMesh.Engine.Tests.Text.Jinja;

/// <summary>
/// The engine's Jinja against Hugging Face's (@huggingface/jinja): each construct chat templates use, rendered by both
/// with the same variables, must give the same text, or fail in both.
/// </summary>
public sealed class JinjaConformanceTests
{
    private const string Variables = """
        {
          "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi \"there\"\n<b>&'x'</b> 😀"},
            {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello!"}
          ],
          "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather ☀️ now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}}}],
          "n": 7, "f": 2.5, "s": "  a,b, c  ", "empty": "", "flag": true, "nothing": null, "list": [3, 1, 2],
          "d": {"b": 1, "a": [1, 2], "c": {"x": "y"}}
        }
        """;

    /// <summary>Templates that exercise one construct each; booleans are printed through 'y'/'n' (see PythonPrinting).</summary>
    public static readonly string[] Snippets =
    [
        "{{ s }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s | trim }}",
        "{{ s.split(',') | join('/') }}|{{ s.split() | length }}|{{ s.split(',', 1)[1] }}|{{ 'a-b-c'.split('-')[-1] }}",
        "{{ 'y' if s.startswith('  a') else 'n' }}{{ 'y' if s.endswith(('x', '  ')) else 'n' }}{{ 'y' if s.startswith('a') else 'n' }}",
        "{{ 'abc'[::-1] }}{{ 'abcdef'[1:4] }}{{ 'abcdef'[-2:] }}{{ list[::-1] | join(',') }}{{ messages[-1].role }}{{ [1, 2, 3][1:] | join(',') }}",
        "{{ messages | length }}{{ messages[0]['content'] }}{{ messages[1].content }}",
        "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ loop.length }}:{{ m.role }};{% endfor %}",
        "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{{ loop.length }}{% endfor %}",
        "{% for m in messages %}{% if loop.index0 == 0 %}{% continue %}{% endif %}{% if m.role == 'assistant' %}{% break %}{% endif %}{{ m.role }}{% endfor %}",
        "{% for x in [] %}a{% else %}empty{% endfor %}",
        "{% for k, v in d.items() %}{{ k }}={{ v | tojson }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
        "{{ tools | tojson }}",
        "{{ tools[0] | tojson(indent=4) }}",
        "{{ d | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson }}",
        "{{ d | tojson(separators=(',', ':')) }}{{ d | tojson(sort_keys=true) }}",
        "{{ messages[1].content | tojson }}{{ 'é\t\u0001' | tojson }}",
        "{% set ns = namespace(x=0, s='') %}{% for m in messages %}{% set ns.x = ns.x + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.x }}{{ ns.s }}",
        "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(name='c', punct='.') }}",
        "{{ n + 1 }} {{ n - 10 }} {{ n * 3 }} {{ n // 2 }} {{ n % 4 }} {{ n / 2 }} {{ f * 2 }} {{ 2 ** 10 }} {{ -n }} {{ (n + 1) * 2 }} {{ n + f }}",
        "{{ 'a' ~ n ~ f ~ s }}",
        "{{ 'x' if n > 5 else 'y' }}{{ 'x' if n < 5 else 'y' }}{{ 'x' if n >= 7 and f <= 2.5 else 'y' }}{{ 'x' if not flag or n == 7 else 'y' }}{{ 'x' if n != 7 else 'y' }}",
        "{{ 'y' if 'Hi' in messages[1].content else 'n' }}{{ 'y' if 'zz' not in s else 'n' }}{{ 'y' if 3 in list else 'n' }}{{ 'y' if 'a' in d else 'n' }}{{ 'y' if 'q' in d else 'n' }}",
        "{{ 'y' if missing is defined else 'n' }}{{ 'y' if missing is undefined else 'n' }}{{ 'y' if nothing is none else 'n' }}{{ 'y' if nothing is not none else 'n' }}",
        "{{ 'y' if s is string else 'n' }}{{ 'y' if n is number else 'n' }}{{ 'y' if n is integer else 'n' }}{{ 'y' if d is mapping else 'n' }}{{ 'y' if list is iterable else 'n' }}{{ 'y' if flag is boolean else 'n' }}{{ 'y' if flag is true else 'n' }}{{ 'y' if flag is false else 'n' }}{{ 'y' if n is odd else 'n' }}{{ 'y' if n is even else 'n' }}{{ 'y' if s is mapping else 'n' }}",
        "{{ missing | default('dflt') }}{{ empty | default('e', true) }}{{ empty | default('e') }}{{ s | upper }}{{ 'Hello World' | lower }}{{ 'hello world' | title }}{{ 'hello' | capitalize }}",
        "{{ list | first }}{{ list | last }}{{ list | reverse | join }}{{ list | sort | join }}{{ list | length }}{{ s | length }}{{ d | length }}",
        "{{ n | string }}{{ '42' | int + 1 }}{{ '2.5' | float * 2 }}{{ -3 | abs }}{{ f | int }}",
        "{{ 'a b a'.replace('a', 'x') }}{{ 'aaa' | replace('a', 'b') }}{{ 'aaa'.replace('a', 'b', 2) }}",
        "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('|') }}{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}",
        "{{ messages | map(attribute='role') | join(',') }}",
        "{{ [1, 2] + [3] }}",
        "{% set parts %}a{{ n }}b{% endset %}{{ parts }}|{{ parts | length }}",
        "{% filter upper %}abc{{ s }}{% endfilter %}",
        "{{ raise_exception('bad role') }}",
        "{%- if true -%}  a  {%- endif -%}  b {{- ' c ' -}} d",
        "  {% if true %}\n  x\n  {% endif %}\n  y\n{% for i in list %}\n    {{ i }}\n{% endfor %}\nz\n",
        "{# comment #}a{#- c -#}  b\n{# two\nlines #}\nc",
        "{{ \"dq\\n\" }}{{ 'sq\\t' }}{{ 'it''s' }}{{ \"a\" 'b' }}",
        "{% if n is defined and n > 30 %}A{% elif n > 1 %}B{% else %}C{% endif %}{% if false %}D{% elif false %}E{% endif %}",
        "{{ messages[0].content if messages[0].role == 'system' else '' }}",
        "{{ d.c.x }}{{ d['c']['x'] }}{{ d.get('b') }}{{ d.get('zz', 'dv') }}{{ d.keys() | list | length }}{{ d.values() | list | length }}",
        "{{ (messages | length) - 1 }}{{ messages | length - 1 }}",
        "{% set a, b = 1, 2 %}{{ a }}{{ b }}",
        "{{ s.split(',')[0].strip() | upper }}",
        "{{ messages[5] }}{{ missing.attr }}{{ nothing.x }}{{ missing['k'] }}|",
        "{{ 1 if missing else 2 }}{{ n if n > 100 }}|{{ true and 'x' }}{{ '' or 'z' }}{{ 0 or empty or 'last' }}",
        "{{ {'a': 1}['a'] }}{{ {'k': 'v', 'n': [1, none, true]} | tojson }}",
        "{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}",
        "{% for message in messages[::-1] %}{% set index = (messages | length - 1) - loop.index0 %}{{ index }}{{ message.role[:1] }}{% endfor %}",
        "{% set content = messages[2].content %}{{ content.split('</think>')[-1].lstrip('\\n') }}|{{ content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
        "{{ messages[2].content.split('</think>', 1)[1] }}",
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ system_message }}{{ loop_messages | length }}",
        "{% for tool in tools %}{{ tool.function.name }}({% for name, p in tool.function.parameters.properties.items() %}{{ name }}: {{ p.type }}{% if not loop.last %}, {% endif %}{% endfor %}){% endfor %}",
        "{% macro render(p, depth=0) %}{% if p is mapping %}{% for k, v in p.items() %}{{ k }}:{{ render(v, depth + 1) }};{% endfor %}{% else %}{{ p | join(',') if p is iterable and p is not string else p }}{% endif %}{% endmacro %}{{ render(tools[0].function.parameters) }}",
        "{{ 'y' if tools else 'n' }}{{ 'y' if empty else 'n' }}{{ 'y' if [] else 'n' }}{{ 'y' if {} else 'n' }}{{ 'y' if 0 else 'n' }}{{ 'y' if 0.0 else 'n' }}{{ 'y' if nothing else 'n' }}",
        "{{ 'y' if messages[1].content is string and messages[1].content | length > 3 else 'n' }}",
        "{{ 'abc' | indent(2) }}|{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(4, true) }}",
        "{{ 10 / 4 }} {{ 10 // 4 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2.0 ** 2 }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }}",
        "{% if messages %}{% set x = 'set in if' %}{% endif %}{{ x }}",
        "{{ undefined_call() }}",
        "{% for %}",
        "{{ 'unclosed }}",
        "{% if true %}no end",
        "{% endif %}",
        "{% for x in 5 %}{{ x }}{% endfor %}",
    ];

    [Fact]
    public void EverySnippet_RendersAsHuggingFacesJinja()
    {
        var variables = JsonNode.Parse(Variables)!.AsObject();
        var expected = TemplateOracle.Render(Snippets.Select(t => (t, variables)).ToList());
        var values = JsonDocument.Parse(Variables).RootElement.EnumerateObject().ToDictionary(p => p.Name, p => JinjaValues.FromJson(p.Value));
        var failures = new List<string>();
        for (var i = 0; i < Snippets.Length; i++)
        {
            var (text, error) = Render(Snippets[i], values);
            var ok = expected[i].Text is not null ? text == expected[i].Text : error is not null;
            if (!ok) failures.Add($"#{i} {Snippets[i]}\n  oracle: {expected[i].Text ?? "error " + expected[i].Error}\n  engine: {text ?? "error " + error}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static (string? Text, string? Error) Render(string template, IReadOnlyDictionary<string, object?> values)
    {
        try
        {
            return (JinjaTemplate.Parse(template).Render(values, DateTimeOffset.UnixEpoch).Text, null);
        }
        catch (JinjaException e)
        {
            return (null, e.Message);
        }
    }
}
