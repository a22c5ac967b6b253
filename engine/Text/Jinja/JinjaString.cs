using System.Collections.Immutable;
using System.Text;

namespace MoeMesh.Engine.Text.Jinja;

/// <summary>
/// A template string value that remembers which of its characters came from the caller's data (message content,
/// tools) rather than from the template: the renderer reports those spans so that the tokenizer can keep special-token
/// text written by a user plain.
/// </summary>
public sealed class JinjaString
{
    public static readonly JinjaString Empty = new("", []);

    public JinjaString(string text, ImmutableArray<(int Start, int Length)> content)
    {
        Text = text;
        Content = content;
    }

    public string Text { get; }

    /// <summary>The spans (in order, not overlapping) that are caller data.</summary>
    public ImmutableArray<(int Start, int Length)> Content { get; }

    public bool HasContent => Content.Length > 0;

    public static JinjaString Template(string text) => new(text, []);

    public static JinjaString Data(string text) => new(text, text.Length == 0 ? [] : [(0, text.Length)]);

    /// <summary>A string derived from <paramref name="source"/> in a way that does not keep positions: all of it counts as data if any of the source did.</summary>
    public static JinjaString DerivedFrom(string text, bool anyContent) => anyContent ? Data(text) : Template(text);

    public static JinjaString Concat(JinjaString a, JinjaString b)
    {
        if (b.Text.Length == 0) return a;
        if (a.Text.Length == 0) return b;
        if (b.Content.IsEmpty) return new JinjaString(a.Text + b.Text, a.Content);
        var spans = ImmutableArray.CreateBuilder<(int, int)>(a.Content.Length + b.Content.Length);
        spans.AddRange(a.Content);
        foreach (var (s, l) in b.Content) spans.Add((s + a.Text.Length, l));
        return new JinjaString(a.Text + b.Text, spans.MoveToImmutable());
    }

    /// <summary>The characters [start, start + length), with the data spans that fall in them.</summary>
    public JinjaString Substring(int start, int length)
    {
        if (start == 0 && length == Text.Length) return this;
        var spans = ImmutableArray.CreateBuilder<(int, int)>();
        foreach (var (s, l) in Content)
        {
            var from = Math.Max(s, start);
            var to = Math.Min(s + l, start + length);
            if (to > from) spans.Add((from - start, to - from));
        }
        return new JinjaString(Text.Substring(start, length), spans.ToImmutable());
    }

    public override string ToString() => Text;

    /// <summary>Collects rendered output and its data spans.</summary>
    public sealed class Builder
    {
        private readonly StringBuilder _text = new();
        private readonly List<(int Start, int Length)> _content = [];

        public int Length => _text.Length;

        public void Append(JinjaString s)
        {
            foreach (var (start, length) in s.Content)
            {
                var at = start + _text.Length;
                if (_content.Count > 0 && _content[^1].Start + _content[^1].Length == at)
                    _content[^1] = (_content[^1].Start, _content[^1].Length + length);
                else _content.Add((at, length));
            }
            _text.Append(s.Text);
        }

        public JinjaString ToJinjaString() => new(_text.ToString(), [.. _content]);
    }
}
