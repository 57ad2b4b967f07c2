namespace AgileQuant.Models.Gguf;

/// <summary>
/// Element type of a GGUF tensor (<c>enum ggml_type</c> in ggml/include/ggml.h; numbers are the on-disk codes,
/// gaps are types ggml has removed). Block geometry, whether this library reads a type and what it becomes at load
/// are in one table, <see cref="GgmlTypeTraits"/>.
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
