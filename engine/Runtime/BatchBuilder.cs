using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Scheduling;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Runtime;

/// <summary>Turns a step's scheduled chunks into the tensors of a <see cref="ForwardBatch"/>.</summary>
internal static class BatchBuilder
{
    public static ForwardBatch Build(IReadOnlyList<ScheduledChunk> chunks, BlockAllocator allocator, Device device, bool batchDecodes)
    {
        var n = chunks.Sum(c => c.Length);
        var tokens = new long[n];
        var positions = new long[n];
        var slots = new long[n];
        var prefills = new List<PrefillSlice>();
        var decodes = new List<(int Row, ScheduledChunk Chunk)>();
        var row = 0;
        foreach (var chunk in chunks)
        {
            var table = chunk.Sequence.BlockTable;
            for (var i = 0; i < chunk.Length; i++)
            {
                var p = chunk.Start + i;
                tokens[row + i] = chunk.Sequence.Tokens[p];
                positions[row + i] = p;
                slots[row + i] = allocator.Slot(table, p);
            }
            if (chunk.Length == 1 && batchDecodes) decodes.Add((row, chunk));
            else prefills.Add(Prefill(chunk, row, allocator, device));
            row += chunk.Length;
        }
        return new ForwardBatch
        {
            TokenIds = tensor(tokens, device: device),
            Positions = tensor(positions, device: device),
            WriteSlots = tensor(slots, device: device),
            Prefills = prefills,
            Decodes = decodes.Count == 0 ? null : DecodeGroupOf(decodes, allocator, device),
        };
    }

    private static PrefillSlice Prefill(ScheduledChunk chunk, int row, BlockAllocator allocator, Device device)
    {
        var context = chunk.Start + chunk.Length;
        var ctxSlots = new long[context];
        for (var p = 0; p < context; p++) ctxSlots[p] = allocator.Slot(chunk.Sequence.BlockTable, p);
        return new PrefillSlice(row, chunk.Length, chunk.Start, tensor(ctxSlots, device: device));
    }

    private static DecodeGroup DecodeGroupOf(List<(int Row, ScheduledChunk Chunk)> decodes, BlockAllocator allocator, Device device)
    {
        var b = decodes.Count;
        var tmax = decodes.Max(d => d.Chunk.Start + 1);
        var rows = new long[b];
        var slots = new long[b * tmax];
        var lengths = new long[b];
        for (var i = 0; i < b; i++)
        {
            var (r, chunk) = decodes[i];
            rows[i] = r;
            lengths[i] = chunk.Start + 1;
            for (var p = 0; p < lengths[i]; p++) slots[i * tmax + p] = allocator.Slot(chunk.Sequence.BlockTable, p);
        }
        return new DecodeGroup(
            tensor(rows, device: device),
            tensor(slots, new long[] { b, tmax }, device: device),
            tensor(lengths, new long[] { b, 1 }, device: device),
            lengths.Min());
    }
}
