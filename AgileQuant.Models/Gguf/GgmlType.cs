namespace AgileQuant.Models.Gguf;

/// <summary>
/// Element type of a GGUF tensor (<c>enum ggml_type</c> in ggml/include/ggml.h; numbers are the on-disk codes,
/// gaps are types ggml has removed).
/// </summary>
public enum GgmlType : uint
{
    /// <summary>float32.</summary>
    F32 = 0,
    /// <summary>float16.</summary>
    F16 = 1,
    /// <summary>4-bit, blocks of 32 with one fp16 scale.</summary>
    Q4_0 = 2,
    /// <summary>4-bit, blocks of 32 with fp16 scale and min.</summary>
    Q4_1 = 3,
    /// <summary>5-bit, blocks of 32 with one fp16 scale.</summary>
    Q5_0 = 6,
    /// <summary>5-bit, blocks of 32 with fp16 scale and min.</summary>
    Q5_1 = 7,
    /// <summary>8-bit, blocks of 32 with one fp16 scale.</summary>
    Q8_0 = 8,
    /// <summary>8-bit, blocks of 32 with fp16 scale and sum.</summary>
    Q8_1 = 9,
    /// <summary>2-bit k-quant, super-blocks of 256.</summary>
    Q2_K = 10,
    /// <summary>3-bit k-quant, super-blocks of 256.</summary>
    Q3_K = 11,
    /// <summary>4-bit k-quant, super-blocks of 256.</summary>
    Q4_K = 12,
    /// <summary>5-bit k-quant, super-blocks of 256.</summary>
    Q5_K = 13,
    /// <summary>6-bit k-quant, super-blocks of 256.</summary>
    Q6_K = 14,
    /// <summary>8-bit k-quant (intermediate), super-blocks of 256.</summary>
    Q8_K = 15,
    /// <summary>i-quant 2.06 bpw.</summary>
    IQ2_XXS = 16,
    /// <summary>i-quant 2.31 bpw.</summary>
    IQ2_XS = 17,
    /// <summary>i-quant 3.06 bpw.</summary>
    IQ3_XXS = 18,
    /// <summary>i-quant 1.56 bpw.</summary>
    IQ1_S = 19,
    /// <summary>4-bit non-linear, blocks of 32.</summary>
    IQ4_NL = 20,
    /// <summary>i-quant 3.44 bpw.</summary>
    IQ3_S = 21,
    /// <summary>i-quant 2.5 bpw.</summary>
    IQ2_S = 22,
    /// <summary>4-bit non-linear, super-blocks of 256.</summary>
    IQ4_XS = 23,
    /// <summary>int8.</summary>
    I8 = 24,
    /// <summary>int16.</summary>
    I16 = 25,
    /// <summary>int32.</summary>
    I32 = 26,
    /// <summary>int64.</summary>
    I64 = 27,
    /// <summary>float64.</summary>
    F64 = 28,
    /// <summary>i-quant 1.75 bpw.</summary>
    IQ1_M = 29,
    /// <summary>bfloat16.</summary>
    BF16 = 30,
    /// <summary>ternary 1.69 bpw.</summary>
    TQ1_0 = 34,
    /// <summary>ternary 2.06 bpw.</summary>
    TQ2_0 = 35,
    /// <summary>microscaling fp4, blocks of 32.</summary>
    MXFP4 = 39,
}

/// <summary>Block geometry of each <see cref="GgmlType"/>: elements per block and bytes per block.</summary>
public static class GgmlTypeLayout
{
    private const int QK_K = 256;

    /// <summary>
    /// Elements per block and bytes per block of <paramref name="type"/> (gguf-py <c>GGML_QUANT_SIZES</c>,
    /// ggml-org/llama.cpp gguf-py/gguf/constants.py); false for a code this reader does not know.
    /// A row of n elements takes n / elementsPerBlock * bytesPerBlock bytes.
    /// </summary>
    public static bool TryGetBlock(GgmlType type, out int elementsPerBlock, out int bytesPerBlock)
    {
        (elementsPerBlock, bytesPerBlock) = type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 => (1, 2),
            GgmlType.Q4_0 => (32, 2 + 16),
            GgmlType.Q4_1 => (32, 2 + 2 + 16),
            GgmlType.Q5_0 => (32, 2 + 4 + 16),
            GgmlType.Q5_1 => (32, 2 + 2 + 4 + 16),
            GgmlType.Q8_0 => (32, 2 + 32),
            GgmlType.Q8_1 => (32, 2 + 2 + 32),
            GgmlType.Q2_K => (QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
            GgmlType.Q3_K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            GgmlType.Q4_K => (QK_K, 2 + 2 + QK_K / 2 + 12),
            GgmlType.Q5_K => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
            GgmlType.Q6_K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            GgmlType.Q8_K => (QK_K, 4 + QK_K + QK_K / 8),
            GgmlType.IQ2_XXS => (QK_K, 2 + QK_K / 4),
            GgmlType.IQ2_XS => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            GgmlType.IQ3_XXS => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            GgmlType.IQ1_S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            GgmlType.IQ4_NL => (32, 2 + 16),
            GgmlType.IQ3_S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            GgmlType.IQ2_S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            GgmlType.IQ4_XS => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            GgmlType.I8 => (1, 1),
            GgmlType.I16 => (1, 2),
            GgmlType.I32 => (1, 4),
            GgmlType.I64 => (1, 8),
            GgmlType.F64 => (1, 8),
            GgmlType.IQ1_M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            GgmlType.BF16 => (1, 2),
            GgmlType.TQ1_0 => (QK_K, 2 + 4 * 13),
            GgmlType.TQ2_0 => (QK_K, 2 + 64),
            GgmlType.MXFP4 => (32, 1 + 16),
            _ => (0, 0),
        };
        return elementsPerBlock > 0;
    }
}
