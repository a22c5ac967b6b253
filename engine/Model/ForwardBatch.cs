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
public sealed class PrefillSlice(int start, int length, Tensor contextSlots, Tensor causalMask) : IDisposable
{
    public int Start { get; } = start;
    public int Length { get; } = length;

    /// <summary>Cache slots of every context token, the new ones included, [T].</summary>
    public Tensor ContextSlots { get; } = contextSlots;

    /// <summary>Additive mask [Length, T]: 0 where a query may attend, -inf after its own position.</summary>
    public Tensor CausalMask { get; } = causalMask;

    public void Dispose()
    {
        ContextSlots.Dispose();
        CausalMask.Dispose();
    }
}

/// <summary>Decode tokens of B sequences with padded context slot tables.</summary>
public sealed class DecodeGroup(Tensor rows, Tensor contextSlots, Tensor paddingMask) : IDisposable
{
    /// <summary>Batch rows of the decode tokens, [B].</summary>
    public Tensor Rows { get; } = rows;

    /// <summary>Context slots per sequence, padded, [B, Tmax].</summary>
    public Tensor ContextSlots { get; } = contextSlots;

    /// <summary>Additive mask [B, 1, Tmax]: 0 for real context, -inf for padding.</summary>
    public Tensor PaddingMask { get; } = paddingMask;

    public void Dispose()
    {
        Rows.Dispose();
        ContextSlots.Dispose();
        PaddingMask.Dispose();
    }
}
