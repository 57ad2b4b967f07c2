using System.Buffers.Binary;

namespace AgileQuant.Models.Onnx;

/// <summary>ONNX <c>TensorProto.DataType</c> values (onnx/onnx, onnx/onnx.proto3).</summary>
public enum OnnxDataType
{
    /// <summary>Not set.</summary>
    Undefined = 0,
    /// <summary>32-bit IEEE float.</summary>
    Float = 1,
    /// <summary>Unsigned 8-bit integer.</summary>
    UInt8 = 2,
    /// <summary>Signed 8-bit integer.</summary>
    Int8 = 3,
    /// <summary>Unsigned 16-bit integer.</summary>
    UInt16 = 4,
    /// <summary>Signed 16-bit integer.</summary>
    Int16 = 5,
    /// <summary>Signed 32-bit integer.</summary>
    Int32 = 6,
    /// <summary>Signed 64-bit integer.</summary>
    Int64 = 7,
    /// <summary>UTF-8 strings.</summary>
    String = 8,
    /// <summary>Booleans, one byte each.</summary>
    Bool = 9,
    /// <summary>IEEE half precision.</summary>
    Float16 = 10,
    /// <summary>64-bit IEEE float.</summary>
    Double = 11,
    /// <summary>Unsigned 32-bit integer.</summary>
    UInt32 = 12,
    /// <summary>Unsigned 64-bit integer.</summary>
    UInt64 = 13,
    /// <summary>bfloat16.</summary>
    BFloat16 = 16,
}

/// <summary>
/// One <c>GraphProto.initializer</c> of an ONNX model: name, dims and data type, with its data either as
/// little-endian <c>raw_data</c> bytes or as <c>float_data</c>. Shapes and data sizes were validated when the file was read.
/// </summary>
public sealed class OnnxTensor
{
    private readonly ReadOnlyMemory<byte> _raw;
    private readonly float[]? _floatData;
    private readonly long[]? _int64Data;

    internal OnnxTensor(string filePath, string name, long[] dims, OnnxDataType dataType, long elementCount,
        ReadOnlyMemory<byte> raw, bool hasRaw, float[]? floatData, long[]? int64Data)
    {
        FilePath = filePath;
        Name = name;
        Dims = dims;
        DataType = dataType;
        ElementCount = elementCount;
        _raw = raw;
        HasRawData = hasRaw;
        _floatData = floatData;
        _int64Data = int64Data;
    }

    /// <summary>The file the tensor was read from (for error messages).</summary>
    public string FilePath { get; }

    /// <summary>The initializer's name (an input name of the graph's nodes).</summary>
    public string Name { get; }

    /// <summary>Dimensions, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<long> Dims { get; }

    /// <summary>Element type.</summary>
    public OnnxDataType DataType { get; }

    /// <summary>Product of <see cref="Dims"/>.</summary>
    public long ElementCount { get; }

    /// <summary>True when the data is stored as <c>raw_data</c>.</summary>
    public bool HasRawData { get; }

    /// <summary>Bytes per element of <paramref name="type"/>, or 0 for types without a fixed size (strings).</summary>
    public static int ElementSize(OnnxDataType type) => type switch
    {
        OnnxDataType.Float or OnnxDataType.Int32 or OnnxDataType.UInt32 => 4,
        OnnxDataType.Int64 or OnnxDataType.UInt64 or OnnxDataType.Double => 8,
        OnnxDataType.UInt8 or OnnxDataType.Int8 or OnnxDataType.Bool => 1,
        OnnxDataType.UInt16 or OnnxDataType.Int16 or OnnxDataType.Float16 or OnnxDataType.BFloat16 => 2,
        _ => 0,
    };

    /// <summary>The elements as FP32, in row-major order; only for <see cref="OnnxDataType.Float"/> tensors.</summary>
    /// <exception cref="ModelFormatException">The tensor is not FLOAT.</exception>
    public float[] ToFloat32()
    {
        if (DataType != OnnxDataType.Float)
            throw new ModelFormatException(FilePath, Name, $"expected data type FLOAT (1), found {DataType} ({(int)DataType})");
        if (_floatData is not null) return (float[])_floatData.Clone();
        var values = new float[ElementCount];
        ReadOnlySpan<byte> bytes = _raw.Span;
        if (BitConverter.IsLittleEndian) bytes.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        else
            for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(i * 4, 4));
        return values;
    }

    /// <summary>The elements as 64-bit integers; only for <see cref="OnnxDataType.Int64"/> tensors.</summary>
    /// <exception cref="ModelFormatException">The tensor is not INT64.</exception>
    public long[] ToInt64()
    {
        if (DataType != OnnxDataType.Int64)
            throw new ModelFormatException(FilePath, Name, $"expected data type INT64 (7), found {DataType} ({(int)DataType})");
        if (_int64Data is not null) return (long[])_int64Data.Clone();
        var values = new long[ElementCount];
        ReadOnlySpan<byte> bytes = _raw.Span;
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadInt64LittleEndian(bytes.Slice(i * 8, 8));
        return values;
    }
}

/// <summary>One <c>GraphProto.node</c>: its operator and the names of its inputs and outputs.</summary>
/// <param name="Name">Node name (may be empty).</param>
/// <param name="OpType">Operator, e.g. <c>MatMul</c>.</param>
/// <param name="Inputs">Input value names, in order.</param>
/// <param name="Outputs">Output value names, in order.</param>
public sealed record OnnxNode(string Name, string OpType, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs);
