using System.Text;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Writes a GGUF version 3 file (ggml-org/ggml docs/gguf.md): header, metadata in the order added, tensor infos,
/// padding to <see cref="GgufFile.DefaultAlignment"/>, then each tensor's data, each padded to the alignment.
/// Tensor data is produced by a callback at write time, so a model larger than memory can stream row by row.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<(string Name, long[] Shape, GgmlType Type, long Bytes, Action<Stream> Write)> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>Adds a string value.</summary>
    public void AddString(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        Add(key, GgufValueType.String, w => WriteString(w, value));
    }

    /// <summary>Adds a uint32 value.</summary>
    public void AddUInt32(string key, uint value) => Add(key, GgufValueType.UInt32, w => w.Write(value));

    /// <summary>Adds a float32 value.</summary>
    public void AddFloat32(string key, float value) => Add(key, GgufValueType.Float32, w => w.Write(value));

    /// <summary>Adds a bool value.</summary>
    public void AddBool(string key, bool value) => Add(key, GgufValueType.Bool, w => w.Write(value));

    /// <summary>Adds an array of strings.</summary>
    public void AddArray(string key, IReadOnlyList<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        string[] copy = values.ToArray();
        AddArray(key, GgufValueType.String, copy.Length, w => { foreach (string s in copy) WriteString(w, s); });
    }

    /// <summary>Adds an array of float32.</summary>
    public void AddArray(string key, IReadOnlyList<float> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        float[] copy = values.ToArray();
        AddArray(key, GgufValueType.Float32, copy.Length, w => { foreach (float v in copy) w.Write(v); });
    }

    /// <summary>Adds an array of int32.</summary>
    public void AddArray(string key, IReadOnlyList<int> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        int[] copy = values.ToArray();
        AddArray(key, GgufValueType.Int32, copy.Length, w => { foreach (int v in copy) w.Write(v); });
    }

    /// <summary>Adds a value as read from a GGUF file (<see cref="GgufFile.Metadata"/>), of any type, unchanged.</summary>
    public void AddValue(string key, GgufValue value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.ElementType is GgufValueType element)
        {
            var array = (Array)value.Value;
            AddArray(key, element, array.Length, w => { foreach (object item in array) WriteScalar(w, element, item); });
        }
        else Add(key, value.Type, w => WriteScalar(w, value.Type, value.Value));
    }

    /// <summary>
    /// Adds a tensor of ggml shape <paramref name="shape"/> (innermost first) and <paramref name="type"/>, whose
    /// bytes <paramref name="writeData"/> writes when <see cref="Write"/> runs (it must write exactly the byte size
    /// the shape and type imply).
    /// </summary>
    public void AddTensor(string name, IReadOnlyList<long> shape, GgmlType type, Action<Stream> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(writeData);
        if (Encoding.UTF8.GetByteCount(name) > GgufFile.MaxTensorNameBytes)
            throw new ArgumentException($"Expected a tensor name of at most {GgufFile.MaxTensorNameBytes} bytes, found '{name}'.", nameof(name));
        if (shape.Count is 0 or > GgufFile.MaxDimensions || shape.Any(d => d <= 0))
            throw new ArgumentException($"Expected 1..{GgufFile.MaxDimensions} positive dimensions, found [{string.Join(", ", shape)}].", nameof(shape));
        if (GgmlTypeTraits.Find(type) is not { BlockElements: int blockElements, BlockBytes: int blockBytes } || shape[0] % blockElements != 0)
            throw new ArgumentException($"Expected a known type whose block divides the row length {shape[0]}, found {type}.", nameof(type));
        if (!_names.Add(name)) throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        long elements = shape.Aggregate(1L, (a, b) => checked(a * b));
        _tensors.Add((name, shape.ToArray(), type, elements / blockElements * blockBytes, writeData));
    }

    /// <summary>Writes the file to <paramref name="path"/> (via a temporary file, renamed when complete).</summary>
    public void Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string temporary = path + ".partial";
        try
        {
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                WriteTo(file);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>Writes the file to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(GgufFile.SupportedVersion);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach ((string key, GgufValueType type, Action<BinaryWriter> write) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            write(w);
        }
        long offset = 0;
        foreach ((string name, long[] shape, GgmlType type, long bytes, _) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            foreach (long d in shape) w.Write((ulong)d);
            w.Write((uint)type);
            w.Write((ulong)offset);
            offset = AlignUp(offset + bytes);
        }
        w.Flush();
        Pad(stream, stream.Position);
        foreach ((string name, _, _, long bytes, Action<Stream> write) in _tensors)
        {
            var counting = new CountingStream(stream);
            write(counting);
            if (counting.Written != bytes)
                throw new InvalidOperationException($"Tensor '{name}': expected {bytes} bytes of data, the writer wrote {counting.Written}.");
            Pad(stream, bytes);
        }
        stream.Flush();
    }

    private void Add(string key, GgufValueType type, Action<BinaryWriter> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (!_keys.Add(key)) throw new ArgumentException($"Metadata key '{key}' was already added.", nameof(key));
        _metadata.Add((key, type, write));
    }

    private void AddArray(string key, GgufValueType elementType, int count, Action<BinaryWriter> writeElements) =>
        Add(key, GgufValueType.Array, w =>
        {
            w.Write((uint)elementType);
            w.Write((ulong)count);
            writeElements(w);
        });

    private static void WriteScalar(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((bool)value); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            default: throw new ArgumentException($"Expected a scalar or string GGUF value type, found {GgufValue.Name(type)}.", nameof(type));
        }
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static long AlignUp(long value) => (value + GgufFile.DefaultAlignment - 1) / GgufFile.DefaultAlignment * GgufFile.DefaultAlignment;

    // Writes zeros from `length` up to the next multiple of the alignment.
    private static void Pad(Stream stream, long length)
    {
        Span<byte> zeros = stackalloc byte[GgufFile.DefaultAlignment];
        stream.Write(zeros[..(int)(AlignUp(length) - length)]);
    }

    /// <summary>Forwards writes and counts the bytes, so a tensor callback that writes the wrong amount is caught.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Written { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            inner.Write(buffer);
            Written += buffer.Length;
        }
    }
}
