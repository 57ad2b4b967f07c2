namespace AgileQuant.Models.Gguf;

/// <summary>
/// Type tag of a GGUF metadata value (ggml/docs/gguf.md, <c>gguf_metadata_value_type</c>); the numbers are
/// the on-disk uint32 codes.
/// </summary>
public enum GgufValueType : uint
{
    /// <summary>8-bit unsigned integer.</summary>
    UInt8 = 0,
    /// <summary>8-bit signed integer.</summary>
    Int8 = 1,
    /// <summary>16-bit unsigned integer.</summary>
    UInt16 = 2,
    /// <summary>16-bit signed integer.</summary>
    Int16 = 3,
    /// <summary>32-bit unsigned integer.</summary>
    UInt32 = 4,
    /// <summary>32-bit signed integer.</summary>
    Int32 = 5,
    /// <summary>IEEE 754 binary32.</summary>
    Float32 = 6,
    /// <summary>One byte, 0 = false, 1 = true.</summary>
    Bool = 7,
    /// <summary>uint64 byte length, then UTF-8 bytes (no terminator).</summary>
    String = 8,
    /// <summary>uint32 element type, uint64 count, then the elements.</summary>
    Array = 9,
    /// <summary>64-bit unsigned integer.</summary>
    UInt64 = 10,
    /// <summary>64-bit signed integer.</summary>
    Int64 = 11,
    /// <summary>IEEE 754 binary64.</summary>
    Float64 = 12,
}
