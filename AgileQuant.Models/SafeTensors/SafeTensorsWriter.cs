using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace AgileQuant.Models.SafeTensors;

/// <summary>
/// Writes a safetensors file: 8-byte little-endian header length N, a JSON header padded with spaces so
/// that the data section starts at a multiple of 8, then the tensors' bytes back to back (the format
/// forbids holes). Tensors are laid out by decreasing element size, in the order added within one size,
/// so every tensor starts at a multiple of its element size; the header lists them in that order, after
/// the <c>"__metadata__"</c> block. Data given as bytes is referenced, not copied, until <see cref="Write(string)"/>.
/// </summary>
public sealed class SafeTensorsWriter
{
    private readonly List<Entry> _entries = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    private sealed record Entry(string Name, SafeTensorsDType DType, long[] Shape, ReadOnlyMemory<byte> Data, int Order);

    /// <summary>Number of tensors added.</summary>
    public int Count => _entries.Count;

    /// <summary>The metadata written to <c>"__metadata__"</c> (omitted when empty).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>Sets one <c>"__metadata__"</c> entry (e.g. <c>format = pt</c>), replacing an earlier value.</summary>
    public void SetMetadata(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        _metadata[key] = value;
    }

    /// <summary>
    /// Adds a tensor from its raw little-endian bytes; <c>data.Length</c> must equal product(shape) * element size.
    /// The memory is read at write time, so it must not change before then.
    /// </summary>
    public void Add(string name, SafeTensorsDType dtype, ReadOnlySpan<long> shape, ReadOnlyMemory<byte> data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == SafeTensorsHeaderParser.MetadataKey)
            throw new ArgumentException($"'{SafeTensorsHeaderParser.MetadataKey}' is reserved for metadata", nameof(name));
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype");
        if (_names.Contains(name)) throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        long count = 1;
        foreach (long dim in shape)
        {
            if (dim < 0) throw new ArgumentOutOfRangeException(nameof(shape), $"tensor '{name}': expected non-negative dimensions, found {dim}");
            if (dim != 0 && count > long.MaxValue / dim)
                throw new ArgumentOutOfRangeException(nameof(shape), $"tensor '{name}': element count overflows 64 bits");
            count *= dim;
        }
        int elementSize = SafeTensorsDTypes.ElementSize(dtype);
        if (count > data.Length / elementSize || count * elementSize != data.Length)
            throw new ArgumentException(
                $"tensor '{name}': expected {count} elements of {elementSize} bytes for shape {SafeTensorsHeaderParser.ShapeText(shape.ToArray())}, found {data.Length} bytes",
                nameof(data));
        _names.Add(name);
        _entries.Add(new Entry(name, dtype, shape.ToArray(), data, _entries.Count));
    }

    /// <summary>
    /// Adds float32 values stored as F32, F16 or BF16 (both rounded to nearest even; NaN stays NaN).
    /// The values are converted and copied now.
    /// </summary>
    public void AddFloat32(string name, ReadOnlySpan<long> shape, ReadOnlySpan<float> values, SafeTensorsDType storedAs = SafeTensorsDType.F32)
    {
        byte[] bytes;
        switch (storedAs)
        {
            case SafeTensorsDType.F32:
                bytes = MemoryMarshal.AsBytes(values).ToArray();
                break;
            case SafeTensorsDType.F16:
                bytes = new byte[values.Length * 2];
                TensorPrimitives.ConvertToHalf(values, MemoryMarshal.Cast<byte, Half>(bytes.AsSpan()));
                break;
            case SafeTensorsDType.BF16:
                bytes = new byte[values.Length * 2];
                SingleToBFloat16(values, MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan()));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(storedAs), storedAs, "expected F32, F16 or BF16");
        }
        Add(name, storedAs, shape, bytes);
    }

    /// <summary>Adds signed 8-bit values (dtype I8), copied now.</summary>
    public void AddInt8(string name, ReadOnlySpan<long> shape, ReadOnlySpan<sbyte> values) =>
        Add(name, SafeTensorsDType.I8, shape, MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>Adds unsigned 8-bit values (dtype U8), e.g. packed 4-bit codes, copied now.</summary>
    public void AddUInt8(string name, ReadOnlySpan<long> shape, ReadOnlySpan<byte> values) =>
        Add(name, SafeTensorsDType.U8, shape, values.ToArray());

    /// <summary>Adds signed 32-bit values (dtype I32), copied now.</summary>
    public void AddInt32(string name, ReadOnlySpan<long> shape, ReadOnlySpan<int> values) =>
        Add(name, SafeTensorsDType.I32, shape, MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>
    /// Writes the file to <paramref name="path"/> through a temporary file in the same folder that replaces
    /// the target only once complete, so a failed write never leaves a truncated checkpoint.
    /// </summary>
    public void Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = Path.GetFullPath(path);
        string temporary = fullPath + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                Write(stream);
            File.Move(temporary, fullPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>Writes the file to <paramref name="stream"/>; returns the number of bytes written.</summary>
    public long Write(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported");
        List<Entry> ordered = [.. _entries.OrderByDescending(e => SafeTensorsDTypes.ElementSize(e.DType)).ThenBy(e => e.Order)];
        byte[] header = BuildHeader(ordered);
        Span<byte> lengthField = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthField, (ulong)header.Length);
        stream.Write(lengthField);
        stream.Write(header);
        long written = 8 + header.Length;
        foreach (Entry entry in ordered)
        {
            stream.Write(entry.Data.Span);
            written += entry.Data.Length;
        }
        stream.Flush();
        return written;
    }

    // JSON header, space-padded so that 8 + length is a multiple of 8.
    private byte[] BuildHeader(List<Entry> ordered)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (_metadata.Count > 0)
            {
                json.WriteStartObject(SafeTensorsHeaderParser.MetadataKey);
                foreach (var (key, value) in _metadata.OrderBy(p => p.Key, StringComparer.Ordinal)) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (Entry entry in ordered)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", SafeTensorsDTypes.HeaderName(entry.DType));
                json.WriteStartArray("shape");
                foreach (long dim in entry.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += entry.Data.Length;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    // destination[i] = upper 16 bits of source[i] rounded to nearest even; NaN becomes a quiet NaN of the same sign.
    private static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++)
        {
            uint bits = BitConverter.SingleToUInt32Bits(source[i]);
            destination[i] = float.IsNaN(source[i])
                ? (ushort)((bits >> 16) | 0x0040)
                : (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
        }
    }
}
