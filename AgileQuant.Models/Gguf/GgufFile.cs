namespace AgileQuant.Models.Gguf;

/// <summary>
/// The header of a GGUF version 3 file (ggml-org/ggml docs/gguf.md): magic <c>GGUF</c>, uint32 version,
/// uint64 tensor count, uint64 metadata count, the metadata key/value pairs, the tensor infos, then
/// padding to <c>general.alignment</c> (default 32) where the tensor data section starts.
/// Reading is strict: every length, count and offset is checked against the file size and a cap before
/// anything is allocated, and any violation is a <see cref="ModelFormatException"/>.
/// </summary>
public sealed class GgufFile
{
    /// <summary>"GGUF" as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>The only GGUF version this reader accepts.</summary>
    public const uint SupportedVersion = 3;

    /// <summary>Alignment of the data section when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;

    /// <summary>Longest metadata key accepted, in bytes (GGUF keys are at most 65535 bytes).</summary>
    public const int MaxKeyBytes = 65535;

    /// <summary>Longest string value accepted, in bytes.</summary>
    public const int MaxStringBytes = 64 << 20;

    /// <summary>Most elements accepted in one metadata array.</summary>
    public const int MaxArrayCount = 1 << 26;

    /// <summary>Most metadata pairs accepted.</summary>
    public const int MaxMetadataCount = 1 << 20;

    /// <summary>Most tensors accepted.</summary>
    public const int MaxTensorCount = 1 << 20;

    /// <summary>Most dimensions of a tensor (ggml GGML_MAX_DIMS).</summary>
    public const int MaxDimensions = 4;

    /// <summary>Longest tensor name accepted, in bytes (ggml GGML_MAX_NAME is 64 including the terminator).</summary>
    public const int MaxTensorNameBytes = 63;

    private readonly Dictionary<string, GgufValue> _metadata;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    private GgufFile(string path, long fileLength, List<string> keys, Dictionary<string, GgufValue> metadata,
        List<GgufTensorInfo> tensors, int alignment, long dataOffset)
    {
        FilePath = path;
        FileLength = fileLength;
        Keys = keys;
        _metadata = metadata;
        Tensors = tensors;
        _tensorsByName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Alignment = alignment;
        DataOffset = dataOffset;
    }

    /// <summary>The file read.</summary>
    public string FilePath { get; }

    /// <summary>Size of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The GGUF version (always <see cref="SupportedVersion"/>).</summary>
    public uint Version => SupportedVersion;

    /// <summary>Metadata keys in file order.</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary>All metadata by key.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata => _metadata;

    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Alignment of the data section and of every tensor offset.</summary>
    public int Alignment { get; }

    /// <summary>Absolute file offset where the tensor data section starts.</summary>
    public long DataOffset { get; }

    /// <summary>Reads and validates the header of the GGUF file at <paramref name="path"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a valid GGUF v3 file.</exception>
    public static GgufFile Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a GGUF file, found no file");
        FileStream stream = GuardedFile.OpenRead(path, bufferSize: 1, FileOptions.SequentialScan);
        using var reader = new GgufFieldReader(path, stream);
        try
        {
            return ReadHeader(reader);
        }
        catch (IOException e)
        {
            throw new ModelFormatException(path, null, $"could not read the GGUF file near offset {reader.Position}: {e.Message}", e);
        }
    }

    /// <summary>The value of <paramref name="key"/>, or false when the key is absent.</summary>
    public bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out GgufValue? value)
    {
        ArgumentNullException.ThrowIfNull(key);
        return _metadata.TryGetValue(key, out value);
    }

    /// <summary>The string value of <paramref name="key"/>.</summary>
    /// <exception cref="ModelFormatException">The key is absent or not a string.</exception>
    public string GetString(string key) => Get<string>(key, "string");

    /// <summary>The boolean value of <paramref name="key"/>, or <paramref name="fallback"/> when absent.</summary>
    /// <exception cref="ModelFormatException">The key is present but not a bool.</exception>
    public bool GetBoolean(string key, bool fallback) => _metadata.ContainsKey(key) ? Get<bool>(key, "bool") : fallback;

    /// <summary>The value of integer key <paramref name="key"/> (any GGUF integer type), widened to long.</summary>
    /// <exception cref="ModelFormatException">The key is absent, not an integer, or a uint64 above long.MaxValue.</exception>
    public long GetInteger(string key)
    {
        GgufValue value = GetValue(key);
        return value.Value switch
        {
            byte v => v,
            sbyte v => v,
            ushort v => v,
            short v => v,
            uint v => v,
            int v => v,
            long v => v,
            ulong v when v <= long.MaxValue => (long)v,
            _ => throw new ModelFormatException(FilePath, null, $"metadata '{key}': expected an integer up to 2^63-1, found {value}"),
        };
    }

    /// <summary>The value of floating-point key <paramref name="key"/> (float32 or float64).</summary>
    /// <exception cref="ModelFormatException">The key is absent or not floating point.</exception>
    public double GetFloat(string key)
    {
        GgufValue value = GetValue(key);
        return value.Value switch
        {
            float v => v,
            double v => v,
            _ => throw new ModelFormatException(FilePath, null, $"metadata '{key}': expected float32 or float64, found {value.TypeName}"),
        };
    }

    /// <summary>The elements of array key <paramref name="key"/>, whose element type must map to <typeparamref name="T"/>
    /// (string, float for float32, int for int32, uint for uint32, and so on).</summary>
    /// <exception cref="ModelFormatException">The key is absent or not an array of <typeparamref name="T"/>.</exception>
    public IReadOnlyList<T> GetArray<T>(string key)
    {
        GgufValue value = GetValue(key);
        // Exact type test: the CLR would let a uint[] pass as int[].
        return value.Value.GetType() == typeof(T[])
            ? (T[])value.Value
            : throw new ModelFormatException(FilePath, null, $"metadata '{key}': expected array of {typeof(T).Name}, found {value.TypeName}");
    }

    /// <summary>The value of <paramref name="key"/>.</summary>
    /// <exception cref="ModelFormatException">The key is absent.</exception>
    public GgufValue GetValue(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return _metadata.TryGetValue(key, out GgufValue? value)
            ? value
            : throw new ModelFormatException(FilePath, null, $"expected metadata key '{key}', found none");
    }

    private T Get<T>(string key, string expected)
    {
        GgufValue value = GetValue(key);
        return value.Value is T typed
            ? typed
            : throw new ModelFormatException(FilePath, null, $"metadata '{key}': expected {expected}, found {value.TypeName}");
    }

    /// <summary>Copies the data of <paramref name="tensor"/> (a tensor of this file) into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException">The tensor is not one of this file's, or the destination length differs from its byte size.</exception>
    /// <exception cref="ModelFormatException">The file changed or could not be read.</exception>
    public void ReadTensorData(GgufTensorInfo tensor, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!_tensorsByName.TryGetValue(tensor.Name, out GgufTensorInfo? own) || !ReferenceEquals(own, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' is not one of {FilePath}'s tensors", nameof(tensor));
        if (destination.Length != tensor.ByteSize)
            throw new ArgumentException($"expected a destination of {tensor.ByteSize} bytes, found {destination.Length}", nameof(destination));
        try
        {
            using FileStream stream = GuardedFile.OpenRead(FilePath);
            if (stream.Length != FileLength)
                throw new ModelFormatException(FilePath, tensor.Name, $"expected the file to still be {FileLength} bytes, found {stream.Length}");
            stream.Seek(tensor.AbsoluteOffset, SeekOrigin.Begin);
            stream.ReadExactly(destination);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(FilePath, tensor.Name, "could not read tensor data: " + e.Message, e);
        }
    }

    /// <summary>The tensor named <paramref name="name"/>, or null.</summary>
    public GgufTensorInfo? FindTensor(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _tensorsByName.GetValueOrDefault(name);
    }

    private static GgufFile ReadHeader(GgufFieldReader reader)
    {
        uint magic = reader.ReadUInt32("magic");
        if (magic != Magic)
            throw reader.Error($"expected magic 'GGUF' (0x{Magic:X8}), found 0x{magic:X8}");
        uint version = reader.ReadUInt32("version");
        if (version != SupportedVersion)
            throw reader.Error($"expected GGUF version {SupportedVersion}, found {version}");
        ulong tensorCount = reader.ReadUInt64("tensor count");
        ulong metadataCount = reader.ReadUInt64("metadata count");
        // Smallest pair: 8-byte key length + 1 key byte + 4-byte type + 1 value byte.
        CheckCount(reader, metadataCount, MaxMetadataCount, 14, "metadata count");
        // Smallest tensor info: 8 + 1 name bytes, 4 dims count, 8 one dim, 4 type, 8 offset.
        CheckCount(reader, tensorCount, MaxTensorCount, 33, "tensor count");

        var keys = new List<string>((int)metadataCount);
        var metadata = new Dictionary<string, GgufValue>((int)metadataCount, StringComparer.Ordinal);
        for (int i = 0; i < (int)metadataCount; i++)
        {
            string key = reader.ReadString($"metadata {i} key", MaxKeyBytes);
            if (key.Length == 0) throw reader.Error($"metadata {i}: expected a non-empty key, found an empty one");
            uint typeCode = reader.ReadUInt32($"metadata '{key}' type");
            GgufValue value = ReadValue(reader, key, typeCode);
            if (!metadata.TryAdd(key, value)) throw reader.Error($"metadata '{key}': expected unique keys, found a duplicate");
            keys.Add(key);
        }

        int alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out GgufValue? alignValue))
        {
            if (alignValue.Value is not uint align || align == 0 || (align & (align - 1)) != 0 || align > (1 << 20))
                throw reader.Error($"metadata 'general.alignment': expected a uint32 power of two up to 2^20, found {alignValue}");
            alignment = (int)align;
        }

        var pending = new List<(string Name, long[] Shape, GgmlType Type, long Offset, long Elements, long Bytes)>((int)tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < (int)tensorCount; i++)
        {
            string name = reader.ReadString($"tensor {i} name", MaxTensorNameBytes);
            if (name.Length == 0) throw reader.Error($"tensor {i}: expected a non-empty name, found an empty one");
            if (!names.Add(name)) throw new ModelFormatException(reader.Path, name, "expected unique tensor names, found a duplicate");
            uint dimensions = reader.ReadUInt32($"tensor '{name}' dimension count");
            if (dimensions == 0 || dimensions > MaxDimensions)
                throw new ModelFormatException(reader.Path, name, $"expected 1..{MaxDimensions} dimensions, found {dimensions}");
            long[] shape = new long[dimensions];
            long elements = 1;
            for (int d = 0; d < shape.Length; d++)
            {
                ulong size = reader.ReadUInt64($"tensor '{name}' dimension {d}");
                if (size == 0 || size > long.MaxValue)
                    throw new ModelFormatException(reader.Path, name, $"expected dimension {d} in 1..{long.MaxValue}, found {size}");
                shape[d] = (long)size;
                if (elements > long.MaxValue / shape[d])
                    throw new ModelFormatException(reader.Path, name, $"expected an element count below 2^63, found shape [{string.Join(", ", shape.Take(d + 1))}]");
                elements *= shape[d];
            }
            uint typeCode = reader.ReadUInt32($"tensor '{name}' type");
            var type = (GgmlType)typeCode;
            if (GgmlTypeTraits.Find(type) is not { BlockElements: int blockElements, BlockBytes: int blockBytes })
                throw new ModelFormatException(reader.Path, name, $"expected a known ggml type, found type code {typeCode}");
            if (shape[0] % blockElements != 0)
                throw new ModelFormatException(reader.Path, name, $"expected the row length {shape[0]} to be a multiple of the {type} block size {blockElements}");
            long blocks = elements / blockElements;
            if (blocks > long.MaxValue / blockBytes)
                throw new ModelFormatException(reader.Path, name, $"expected a byte size below 2^63, found {blocks} blocks of {blockBytes} bytes");
            ulong offset = reader.ReadUInt64($"tensor '{name}' offset");
            if (offset % (ulong)alignment != 0)
                throw new ModelFormatException(reader.Path, name, $"expected an offset that is a multiple of {alignment}, found {offset}");
            if (offset > (ulong)reader.Length)
                throw new ModelFormatException(reader.Path, name, $"expected an offset within the file of {reader.Length} bytes, found {offset}");
            pending.Add((name, shape, type, (long)offset, elements, blocks * blockBytes));
        }

        long dataOffset = AlignUp(reader.Position, alignment);
        var tensors = new List<GgufTensorInfo>(pending.Count);
        foreach ((string name, long[] shape, GgmlType type, long offset, long elements, long bytes) in pending)
        {
            long end = dataOffset + offset + bytes; // each term < file length or checked above, no overflow
            if (bytes > reader.Length || end > reader.Length)
                throw new ModelFormatException(reader.Path, name,
                    $"expected data at [{dataOffset + offset}, {dataOffset + offset + Math.Min(bytes, reader.Length)}) within the file of {reader.Length} bytes, found it runs past the end (file truncated)");
            tensors.Add(new GgufTensorInfo(name, shape, type, offset, dataOffset + offset, elements, bytes));
        }
        CheckNoOverlap(reader, tensors);
        if (tensors.Count > 0) reader.SkipTo(dataOffset, "tensor data padding");
        return new GgufFile(reader.Path, reader.Length, keys, metadata, tensors, alignment, dataOffset);
    }

    private static void CheckCount(GgufFieldReader reader, ulong count, int cap, int minBytesEach, string what)
    {
        if (count > (ulong)cap)
            throw reader.Error($"{what}: expected at most {cap}, found {count}");
        if (count * (ulong)minBytesEach > (ulong)reader.Remaining)
            throw reader.Error($"{what}: expected room for {count} entries of at least {minBytesEach} bytes, found {reader.Remaining} bytes left");
    }

    private static void CheckNoOverlap(GgufFieldReader reader, List<GgufTensorInfo> tensors)
    {
        GgufTensorInfo[] byOffset = tensors.OrderBy(t => t.RelativeOffset).ToArray();
        for (int i = 1; i < byOffset.Length; i++)
        {
            GgufTensorInfo previous = byOffset[i - 1];
            if (previous.RelativeOffset + previous.ByteSize > byOffset[i].RelativeOffset)
                throw new ModelFormatException(reader.Path, byOffset[i].Name,
                    $"expected data after '{previous.Name}' ends at {previous.RelativeOffset + previous.ByteSize}, found offset {byOffset[i].RelativeOffset} (overlap)");
        }
    }

    private static long AlignUp(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    private static GgufValue ReadValue(GgufFieldReader reader, string key, uint typeCode)
    {
        var type = (GgufValueType)typeCode;
        if (type == GgufValueType.Array)
        {
            uint elementCode = reader.ReadUInt32($"metadata '{key}' array element type");
            var elementType = (GgufValueType)elementCode;
            if (elementType == GgufValueType.Array)
                throw reader.Error($"metadata '{key}': expected an array of scalars or strings, found a nested array");
            int elementBytes = ScalarSize(elementType);
            if (elementBytes == 0)
                throw reader.Error($"metadata '{key}': expected a known array element type 0..12, found {elementCode}");
            ulong count = reader.ReadUInt64($"metadata '{key}' array count");
            CheckCount(reader, count, MaxArrayCount, elementBytes, $"metadata '{key}' array count");
            return new GgufValue(type, elementType, ReadArray(reader, key, elementType, (int)count));
        }
        if (ScalarSize(type) == 0)
            throw reader.Error($"metadata '{key}': expected a value type 0..12, found {typeCode}");
        return new GgufValue(type, null, ReadScalar(reader, key, type));
    }

    /// <summary>Bytes of one element on disk (8 for a string: its minimal length field), or 0 for an unknown type.</summary>
    private static int ScalarSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
        GgufValueType.Array => 12,
        _ => 0,
    };

    private static object ReadScalar(GgufFieldReader reader, string key, GgufValueType type)
    {
        string what = $"metadata '{key}'";
        return type switch
        {
            GgufValueType.UInt8 => reader.ReadUInt8(what),
            GgufValueType.Int8 => (sbyte)reader.ReadUInt8(what),
            GgufValueType.UInt16 => reader.ReadUInt16(what),
            GgufValueType.Int16 => (short)reader.ReadUInt16(what),
            GgufValueType.UInt32 => reader.ReadUInt32(what),
            GgufValueType.Int32 => (int)reader.ReadUInt32(what),
            GgufValueType.Float32 => reader.ReadSingle(what),
            GgufValueType.Bool => ReadBool(reader, what),
            GgufValueType.String => reader.ReadString(what, MaxStringBytes),
            GgufValueType.UInt64 => reader.ReadUInt64(what),
            GgufValueType.Int64 => (long)reader.ReadUInt64(what),
            GgufValueType.Float64 => reader.ReadDouble(what),
            _ => throw reader.Error($"{what}: expected a scalar type, found {(uint)type}"),
        };
    }

    private static bool ReadBool(GgufFieldReader reader, string what)
    {
        byte b = reader.ReadUInt8(what);
        return b switch
        {
            0 => false,
            1 => true,
            _ => throw reader.Error($"{what}: expected a bool byte 0 or 1, found {b} at offset {reader.Position - 1}"),
        };
    }

    private static Array ReadArray(GgufFieldReader reader, string key, GgufValueType elementType, int count)
    {
        string what = $"metadata '{key}' element";
        switch (elementType)
        {
            case GgufValueType.String:
                var strings = new string[count];
                for (int i = 0; i < count; i++) strings[i] = reader.ReadString($"metadata '{key}' element {i}", MaxStringBytes);
                return strings;
            case GgufValueType.Float32:
                var floats = new float[count];
                for (int i = 0; i < count; i++) floats[i] = reader.ReadSingle(what);
                return floats;
            case GgufValueType.Int32:
                var ints = new int[count];
                for (int i = 0; i < count; i++) ints[i] = (int)reader.ReadUInt32(what);
                return ints;
            case GgufValueType.UInt32:
                var uints = new uint[count];
                for (int i = 0; i < count; i++) uints[i] = reader.ReadUInt32(what);
                return uints;
            default:
                return elementType switch
                {
                    GgufValueType.UInt8 => Fill<byte>(reader, key, elementType, count),
                    GgufValueType.Int8 => Fill<sbyte>(reader, key, elementType, count),
                    GgufValueType.UInt16 => Fill<ushort>(reader, key, elementType, count),
                    GgufValueType.Int16 => Fill<short>(reader, key, elementType, count),
                    GgufValueType.Bool => Fill<bool>(reader, key, elementType, count),
                    GgufValueType.UInt64 => Fill<ulong>(reader, key, elementType, count),
                    GgufValueType.Int64 => Fill<long>(reader, key, elementType, count),
                    _ => Fill<double>(reader, key, elementType, count),
                };
        }
    }

    private static T[] Fill<T>(GgufFieldReader reader, string key, GgufValueType elementType, int count)
    {
        var values = new T[count];
        for (int i = 0; i < count; i++) values[i] = (T)ReadScalar(reader, key, elementType);
        return values;
    }
}
