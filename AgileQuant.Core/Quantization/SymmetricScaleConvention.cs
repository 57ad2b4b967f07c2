namespace AgileQuant.Core.Quantization;

/// <summary>
/// How a symmetric b-bit quantizer turns <c>max|x|</c> into its scale. Codes are always
/// <c>clamp(round(x/s), -2^(b-1), 2^(b-1)-1)</c>; only <c>s</c> differs.
/// </summary>
public enum SymmetricScaleConvention
{
    /// <summary>
    /// <c>s = max|x| / (2^(b-1)-1)</c> (docs/method.md §1; the default). The extreme maps exactly to
    /// ±(2^(b-1)-1); the code -2^(b-1) is never produced (15 of 16 levels at 4 bits).
    /// </summary>
    MaxAbsOverPositiveLimit = 0,

    /// <summary>
    /// <c>s = max|x| / ((2^b-1)/2)</c>, i.e. divide by 7.5 at 4 bits and 127.5 at 8 bits, as the Agile-Quant
    /// reference observer and GPTQ's symmetric quantizer do. The positive extreme rounds to 2^(b-1)
    /// and is clamped to 2^(b-1)-1; the negative extreme maps to -2^(b-1).
    /// </summary>
    MaxAbsOverHalfRange = 1,
}
