using static TorchSharp.torch;

namespace MoeMesh.Engine.Model;

/// <summary>
/// The tensors of one engine step: N new tokens from several sequences, laid out slice after slice.
/// Built once per step and shared by every layer.
/// </summary>
public sealed class ForwardBatch : IDisposable
{
    /// <summary>Token ids of the new tokens, [N].</summary>
    public required Tensor TokenIds { get; init; }

    /// <summary>Positions of the new tokens in their sequences, [N].</summary>
    public required Tensor Positions { get; init; }

    /// <summary>Cache slot each new token's latent is written to, [N].</summary>
    public required Tensor WriteSlots { get; init; }

    /// <summary>Slices of more than one token (or every slice when decode batching is off).</summary>
    public required IReadOnlyList<PrefillSlice> Prefills { get; init; }

    /// <summary>Single-token slices, attended together in one padded absorbed pass; null when none.</summary>
    public DecodeGroup? Decodes { get; init; }

    public void Dispose()
    {
        TokenIds.Dispose();
        Positions.Dispose();
        WriteSlots.Dispose();
        foreach (var p in Prefills) p.Dispose();
        Decodes?.Dispose();
    }
}

/// <summary>A run of new tokens of one sequence: rows [Start, Start+Length) of the batch.</summary>
public sealed class PrefillSlice(int start, int length, long queryStart, Tensor contextSlots) : IDisposable
{
    public int Start { get; } = start;
    public int Length { get; } = length;

    /// <summary>Position of the first new token in its sequence; new token i attends to positions 0..QueryStart+i.</summary>
    public long QueryStart { get; } = queryStart;

    /// <summary>Cache slots of every context token, the new ones included, [T].</summary>
    public Tensor ContextSlots { get; } = contextSlots;

    public void Dispose() => ContextSlots.Dispose();
}

/// <summary>Decode tokens of B sequences with padded context slot tables.</summary>
public sealed class DecodeGroup(Tensor rows, Tensor contextSlots, Tensor lengths, long minLength) : IDisposable
{
    /// <summary>Batch rows of the decode tokens, [B].</summary>
    public Tensor Rows { get; } = rows;

    /// <summary>Context slots per sequence, padded, [B, Tmax].</summary>
    public Tensor ContextSlots { get; } = contextSlots;

    /// <summary>Context length per sequence, [B, 1]: slots at and past it are padding.</summary>
    public Tensor Lengths { get; } = lengths;

    /// <summary>The shortest context in the group: tiles below it hold no padding.</summary>
    public long MinLength { get; } = minLength;

    public void Dispose()
    {
        Rows.Dispose();
        ContextSlots.Dispose();
        Lengths.Dispose();
    }
}
