using System.Numerics.Tensors;

namespace AgileQuant.Intrinsics.Quantization;

/// <summary>
/// Symmetric per-row (per-token) quantizer for activations:
/// <c>q[c] = clamp(round(x[c] / s), −qmax, qmax)</c>, <c>s = max_c |x[c]| / qmax</c>, <c>qmax = 2^(bits−1) − 1</c>
/// (127 for 8 bits, 7 for 4 bits; METHOD.md §1, the <c>max/(2^(b−1)−1)</c> convention, so −128 / −8 never occur).
/// </summary>
/// <remarks>
/// Rounding is to nearest, ties to even, of <c>x[c] · (qmax / max)</c>. An all-zero row gets scale 0 and
/// codes 0. Codes never reach −128, which the AVX2 sign trick (<c>vpsignb</c>) relies on.
/// </remarks>
public static class RowQuantizer
{
    /// <summary>Largest code magnitude for <paramref name="bits"/>: 127 (8) or 7 (4).</summary>
    public static int MaxCode(int bits) => bits switch
    {
        8 => 127,
        4 => 7,
        _ => throw new ArgumentOutOfRangeException(nameof(bits), $"Expected 4 or 8 activation bits, found {bits}."),
    };

    /// <summary>Quantizes <paramref name="row"/> into <paramref name="codes"/> (same length) and returns the scale s.</summary>
    public static float QuantizeSymmetric(ReadOnlySpan<float> row, int bits, Span<sbyte> codes)
    {
        int maxCode = MaxCode(bits);
        if (codes.Length < row.Length)
            throw new ArgumentException($"Expected room for {row.Length} codes, found {codes.Length}.", nameof(codes));
        float maxMagnitude = row.IsEmpty ? 0f : MathF.Abs(TensorPrimitives.MaxMagnitude(row));
        if (maxMagnitude == 0f)
        {
            codes[..row.Length].Clear();
            return 0f;
        }
        float inverse = maxCode / maxMagnitude;
        for (int c = 0; c < row.Length; c++)
            codes[c] = (sbyte)Math.Clamp((int)MathF.Round(row[c] * inverse), -maxCode, maxCode);
        return maxMagnitude / maxCode;
    }
}
