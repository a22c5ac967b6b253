namespace MoeMesh.Engine.Text.Jinja;

/// <summary>A template that cannot be parsed or rendered; <see cref="Position"/> is the offset in the template where known.</summary>
public class JinjaException(string message, int position = -1)
    : Exception(position >= 0 ? $"{message} (at template offset {position})" : message)
{
    public int Position { get; } = position;
}
