using System.Runtime.InteropServices;
using MoeMesh.Engine.Runtime;

namespace MoeMesh.Engine.Kernels;

/// <summary>
/// Native memory for weights in the engine's own format, carved from 2 MiB-aligned chunks advised for huge pages
/// (<see cref="HugePages"/>), so that the small matrices of many experts share 2 MiB pages instead of each sitting
/// on 4 KiB ones. A chunk is freed when every block carved from it is disposed; a block larger than a chunk gets
/// a chunk of its own.
/// </summary>
public static unsafe class WeightMemory
{
    private const long ChunkBytes = 32L << 20;
    private const long Alignment = 64;

    private static readonly Lock Gate = new();
    private static Chunk? _current;

    /// <summary>A zeroed block of <paramref name="bytes"/> bytes, 64-byte aligned.</summary>
    public static WeightBlock Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var size = Math.Max(Alignment, (bytes + Alignment - 1) & ~(Alignment - 1));
        lock (Gate)
        {
            if (size > ChunkBytes / 4)
            {
                var own = new Chunk((size + HugePages.Size - 1) & ~(HugePages.Size - 1));
                return own.Carve(size);
            }
            if (_current is null || _current.Free < size)
            {
                _current?.Retire();
                _current = new Chunk(ChunkBytes);
            }
            return _current.Carve(size);
        }
    }

    /// <summary>One 2 MiB-aligned native allocation and the count of live blocks in it.</summary>
    internal sealed class Chunk
    {
        private readonly byte* _base;
        private readonly long _size;
        private long _used;
        private int _live;
        private bool _retired;

        public Chunk(long size)
        {
            _size = size;
            _base = (byte*)NativeMemory.AlignedAlloc((nuint)size, (nuint)HugePages.Size);
            HugePages.Advise((nint)_base, size);
            // Zeroed here, after the advice, so that the first touch maps huge pages where the kernel allows them.
            NativeMemory.Clear(_base, (nuint)size);
        }

        public long Free => _size - _used;

        public WeightBlock Carve(long size)
        {
            var block = new WeightBlock(this, (nint)(_base + _used), size);
            _used += size;
            _live++;
            return block;
        }

        /// <summary>No further blocks come from this chunk; it goes once its last block does.</summary>
        public void Retire()
        {
            _retired = true;
            if (_live == 0) NativeMemory.AlignedFree(_base);
        }

        public void Release()
        {
            lock (Gate)
            {
                if (--_live > 0) return;
                if (_retired || !ReferenceEquals(this, _current)) NativeMemory.AlignedFree(_base);
                else _used = 0; // the current chunk, now empty, is reused from its start
            }
        }
    }
}

/// <summary>A block of native weight memory; <see cref="Dispose"/> returns it (spans taken from it must not outlive that).</summary>
public sealed unsafe class WeightBlock : IDisposable
{
    private readonly WeightMemory.Chunk _chunk;
    private int _disposed;

    internal WeightBlock(WeightMemory.Chunk chunk, nint address, long bytes)
    {
        _chunk = chunk;
        Address = address;
        Bytes = bytes;
    }

    public nint Address { get; }

    /// <summary>Bytes carved for the block (its requested size rounded up to 64).</summary>
    public long Bytes { get; }

    /// <summary>The first <paramref name="count"/> elements of type <typeparamref name="T"/>.</summary>
    public Span<T> Span<T>(long count) where T : unmanaged
    {
        if (count * sizeof(T) > Bytes || count > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(count));
        return new Span<T>((void*)Address, (int)count);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _chunk.Release();
    }
}
