using System.Text;

namespace MoeMesh.Engine.Export;

/// <summary>The GGUF tensor types the exporter writes (ggml_type ids).</summary>
public enum GgufType : uint
{
    F32 = 0,
    F16 = 1,
    BF16 = 30,
}

/// <summary>
/// Writes a GGUF version 3 file (ggml's docs/gguf.md): a header, typed key-value metadata, tensor descriptions, then
/// the tensor data, each tensor at its offset rounded up to the alignment (32 bytes). Tensor bytes are produced by
/// callbacks while writing, one tensor at a time, so a checkpoint larger than memory streams through.
/// </summary>
public sealed class GgufWriter
{
    private const uint Magic = 0x46554747; // "GGUF", little-endian
    private const uint Version = 3;
    private const int Alignment = 32;

    private enum ValueType : uint
    {
        UInt32 = 4,
        Int32 = 5,
        Float32 = 6,
        Bool = 7,
        String = 8,
        Array = 9,
    }

    private readonly List<(string Key, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<Tensor> _tensors = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);

    /// <summary>A tensor to write: dims in ggml's order (the innermost, contiguous one first) and its bytes' producer.</summary>
    private sealed record Tensor(string Name, long[] Dims, GgufType Type, long ByteLength, Action<Stream> Write);

    public void Add(string key, uint value) => Key(key, w => { w.Write((uint)ValueType.UInt32); w.Write(value); });

    public void Add(string key, float value) => Key(key, w => { w.Write((uint)ValueType.Float32); w.Write(value); });

    public void Add(string key, bool value) => Key(key, w => { w.Write((uint)ValueType.Bool); w.Write((byte)(value ? 1 : 0)); });

    public void Add(string key, string value) => Key(key, w => { w.Write((uint)ValueType.String); WriteString(w, value); });

    public void Add(string key, IReadOnlyList<string> values) => Key(key, w =>
    {
        w.Write((uint)ValueType.Array);
        w.Write((uint)ValueType.String);
        w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    });

    public void Add(string key, IReadOnlyList<int> values) => Key(key, w =>
    {
        w.Write((uint)ValueType.Array);
        w.Write((uint)ValueType.Int32);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    });

    /// <summary>Adds a tensor; <paramref name="write"/> must write exactly its bytes (elements x 4 or 2).</summary>
    public void AddTensor(string name, long[] dims, GgufType type, Action<Stream> write)
    {
        if (Encoding.UTF8.GetByteCount(name) >= 64) throw new ArgumentException($"GGUF tensor name '{name}' is 64 bytes or longer");
        if (dims.Length is 0 or > 4) throw new ArgumentException($"GGUF tensor '{name}' has {dims.Length} dimensions (1 to 4 allowed)");
        if (_tensors.Any(t => t.Name == name)) throw new ArgumentException($"GGUF tensor '{name}' added twice");
        var elements = dims.Aggregate(1L, (a, b) => a * b);
        _tensors.Add(new Tensor(name, dims, type, elements * (type == GgufType.F32 ? 4 : 2), write));
    }

    public IReadOnlyList<string> TensorNames => _tensors.Select(t => t.Name).ToList();

    /// <summary>Writes the whole file.</summary>
    public void Write(Stream output)
    {
        var counting = new CountingStream(output);
        using (var w = new BinaryWriter(counting, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(Version);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)_metadata.Count);
            foreach (var (key, write) in _metadata)
            {
                WriteString(w, key);
                write(w);
            }
            long offset = 0;
            foreach (var t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Dims.Length);
                foreach (var d in t.Dims) w.Write((ulong)d);
                w.Write((uint)t.Type);
                w.Write((ulong)offset);
                offset += Padded(t.ByteLength);
            }
        }
        Pad(counting);
        foreach (var t in _tensors)
        {
            var start = counting.Position;
            t.Write(counting);
            if (counting.Position - start != t.ByteLength)
                throw new InvalidOperationException($"GGUF tensor '{t.Name}': wrote {counting.Position - start} bytes, expected {t.ByteLength}");
            Pad(counting);
        }
    }

    private void Key(string key, Action<BinaryWriter> write)
    {
        if (!_keys.Add(key)) throw new ArgumentException($"GGUF key '{key}' added twice");
        _metadata.Add((key, write));
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static long Padded(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(CountingStream s)
    {
        var pad = Padded(s.Position) - s.Position;
        for (var i = 0; i < pad; i++) s.WriteByte(0);
    }

    /// <summary>Counts the bytes written (the output may not be seekable).</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        private long _position;

        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _position;
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            _position += count;
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            inner.Write(buffer);
            _position += buffer.Length;
        }

        public override void WriteByte(byte value)
        {
            inner.WriteByte(value);
            _position++;
        }
    }
}
