namespace MoeMesh.ExpertNode.Serving;

/// <summary>
/// Reads a request body of at most a given size into memory that grows with what has arrived: a declared
/// Content-Length is checked against the limit but never trusted for an allocation, so a client that
/// announces a large body and sends little costs little.
/// </summary>
public static class BoundedBody
{
    private const int FirstChunk = 64 << 10;

    /// <summary>The body's bytes; throws <see cref="BodyTooLargeException"/> past <paramref name="limit"/> and <see cref="InvalidDataException"/> for a body shorter than declared.</summary>
    public static async Task<ReadOnlyMemory<byte>> ReadAsync(Stream body, long? declaredLength, long limit, CancellationToken ct)
    {
        if (declaredLength > limit) throw new BodyTooLargeException(limit);
        var cap = (int)Math.Min(Math.Min(limit, declaredLength ?? limit), Array.MaxLength);
        var buffer = new byte[Math.Min(cap, FirstChunk)];
        var length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                if (length >= cap)
                {
                    // Full at the cap: the body is complete only if nothing more comes.
                    var probe = new byte[1];
                    if (await body.ReadAsync(probe, ct) == 0) break;
                    throw declaredLength is null || length >= limit ? new BodyTooLargeException(limit) : new InvalidDataException($"the body is longer than its Content-Length ({declaredLength})");
                }
                Array.Resize(ref buffer, (int)Math.Min((long)buffer.Length * 2, cap));
            }
            var read = await body.ReadAsync(buffer.AsMemory(length), ct);
            if (read == 0) break;
            length += read;
        }
        if (declaredLength is { } declared && length != declared)
            throw new InvalidDataException($"the body has {length} bytes, its Content-Length says {declared}");
        return buffer.AsMemory(0, length);
    }
}

/// <summary>A request body larger than the node accepts.</summary>
public sealed class BodyTooLargeException(long limit) : Exception($"the body is larger than {limit} bytes, the most this node accepts (see --max-dispatch-tokens)");
