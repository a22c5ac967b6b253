namespace MoeMesh.Gateway.KvStore;

/// <summary>Why a stored page was not used; each is counted under its label.</summary>
public enum KvPageRejection
{
    None,

    /// <summary>Not the length the expected layout gives (truncated, or padded).</summary>
    Size,
    Magic,
    Version,

    /// <summary>Written by another model, dtype, device kind or page size.</summary>
    Fingerprint,

    /// <summary>Page size, layer count, dimensions or dtype differ from the expected layout.</summary>
    Shape,
    Checksum,

    /// <summary>The page chains on another prefix than the one asked for.</summary>
    Parent,

    /// <summary>The page holds other tokens than the prompt's.</summary>
    Tokens,
}
