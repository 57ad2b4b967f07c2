namespace AgileQuant.Models.SafeTensors;

/// <summary>
/// Element types of the safetensors format, named exactly as in the header's <c>"dtype"</c> field
/// (huggingface/safetensors, safetensors/src/tensor.rs, enum Dtype). All are little-endian.
/// </summary>
public enum SafeTensorsDType
{
    /// <summary>Boolean, one byte per element (0 or 1).</summary>
    BOOL,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 5 exponent bits and 2 mantissa bits.</summary>
    F8_E5M2,
    /// <summary>8-bit float, 4 exponent bits and 3 mantissa bits.</summary>
    F8_E4M3,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE 754 half precision (binary16).</summary>
    F16,
    /// <summary>bfloat16: the upper 16 bits of an IEEE 754 single.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE 754 single precision.</summary>
    F32,
    /// <summary>IEEE 754 double precision.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Sizes and header spellings of <see cref="SafeTensorsDType"/> values.</summary>
public static class SafeTensorsDTypes
{
    private static readonly Dictionary<string, SafeTensorsDType> ByHeaderName =
        Enum.GetValues<SafeTensorsDType>().ToDictionary(d => d.ToString(), StringComparer.Ordinal);

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.BOOL or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8_E5M2 or SafeTensorsDType.F8_E4M3 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype"),
    };

    /// <summary>The header spelling of <paramref name="dtype"/> (e.g. <c>"BF16"</c>).</summary>
    public static string HeaderName(SafeTensorsDType dtype)
    {
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype");
        return dtype.ToString();
    }

    /// <summary>
    /// Parses a header spelling, case-sensitively; numeric strings and unknown names are refused
    /// (unlike <see cref="Enum.TryParse{TEnum}(string, out TEnum)"/>).
    /// </summary>
    public static bool TryParse(string text, out SafeTensorsDType dtype)
    {
        ArgumentNullException.ThrowIfNull(text);
        return ByHeaderName.TryGetValue(text, out dtype);
    }

    /// <summary>True for the dtypes <c>ReadFloat32</c> converts: F32, F16 and BF16.</summary>
    public static bool IsReadableAsFloat32(SafeTensorsDType dtype) =>
        dtype is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16;
}
