using System.Globalization;

namespace MoeMesh.Cli;

/// <summary>Parsers of option values; each throws <see cref="FormatException"/> saying what it expects.</summary>
public static class Values
{
    public static string Text(string text) => text.Length > 0 ? text : throw new FormatException("expected a non-empty value");

    public static string? OptionalText(string text) => text.Length > 0 ? text : null;

    public static int PositiveInt(string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : throw new FormatException("expected a positive integer");

    public static long PositiveLong(string text) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : throw new FormatException("expected a positive integer");

    public static double NonNegativeSeconds(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0 && double.IsFinite(v) ? v : throw new FormatException("expected a number of seconds, 0 or more");

    /// <summary>An absolute http or https URL, empty for none; it ends with a slash, so relative paths resolve under it.</summary>
    public static Uri? OptionalHttpUrl(string text) =>
        text.Length == 0 ? null
        : Uri.TryCreate(text.EndsWith('/') ? text : text + "/", UriKind.Absolute, out var u) && u.Scheme is "http" or "https" ? u
        : throw new FormatException("expected an http:// or https:// URL");

    /// <summary>A switch written as on or off.</summary>
    public static bool OnOff(string text) => text switch
    {
        "on" => true,
        "off" => false,
        _ => throw new FormatException("expected on or off"),
    };

    /// <summary>One of the given words.</summary>
    public static Func<string, string> OneOf(params string[] words) =>
        text => words.Contains(text, StringComparer.Ordinal) ? text : throw new FormatException($"expected one of {string.Join(", ", words)}");

    /// <summary>A compute device: cpu, cuda or cuda:N (whether CUDA is there is checked when the model loads).</summary>
    public static string Device(string text) =>
        text is "cpu" or "cuda" || (text.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(text[5..], NumberStyles.None, CultureInfo.InvariantCulture, out _))
            ? text
            : throw new FormatException("expected cpu, cuda or cuda:N");
}
