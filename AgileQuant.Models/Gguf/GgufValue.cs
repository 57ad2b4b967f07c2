namespace AgileQuant.Models.Gguf;

/// <summary>
/// One GGUF metadata value: a scalar (boxed .NET primitive: byte, sbyte, ushort, short, uint, int, float,
/// bool, ulong, long, double), a string, or an array of one scalar or string type (held as a .NET array
/// of that type, e.g. <c>string[]</c>, <c>float[]</c>).
/// </summary>
public sealed class GgufValue
{
    internal GgufValue(GgufValueType type, GgufValueType? elementType, object value)
    {
        Type = type;
        ElementType = elementType;
        Value = value;
    }

    /// <summary>The value's type tag.</summary>
    public GgufValueType Type { get; }

    /// <summary>For <see cref="GgufValueType.Array"/>, the element type; otherwise null.</summary>
    public GgufValueType? ElementType { get; }

    /// <summary>The value: a boxed primitive, a string, or a typed .NET array for arrays.</summary>
    public object Value { get; }

    /// <summary>Number of elements for an array, otherwise 1.</summary>
    public int Count => Value is Array array ? array.Length : 1;

    /// <summary>Readable type name, e.g. <c>uint32</c> or <c>array of string</c>.</summary>
    public string TypeName => ElementType is GgufValueType element ? "array of " + Name(element) : Name(Type);

    internal static string Name(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "uint8",
        GgufValueType.Int8 => "int8",
        GgufValueType.UInt16 => "uint16",
        GgufValueType.Int16 => "int16",
        GgufValueType.UInt32 => "uint32",
        GgufValueType.Int32 => "int32",
        GgufValueType.Float32 => "float32",
        GgufValueType.Bool => "bool",
        GgufValueType.String => "string",
        GgufValueType.Array => "array",
        GgufValueType.UInt64 => "uint64",
        GgufValueType.Int64 => "int64",
        GgufValueType.Float64 => "float64",
        _ => $"type {(uint)type}",
    };

    /// <inheritdoc/>
    public override string ToString() => Value is Array array ? $"{TypeName}[{array.Length}]" : $"{TypeName} {Value}";
}
