using System.Runtime.Intrinsics;
using System.Numerics.Tensors;

namespace AgileQuant.Intrinsics.Quantization;

/// <summary>
/// Symmetric per-row (per-token) quantizer for activations:
/// <c>q[c] = clamp(round(x[c] / s), −qmax, qmax)</c>, <c>s = max_c |x[c]| / qmax</c>, <c>qmax = 2^(bits−1) − 1</c>
/// (127 for 8 bits, 7 for 4 bits; docs/method.md §1, the <c>max/(2^(b−1)−1)</c> convention, so −128 / −8 never occur).
/// </summary>
/// <remarks>
/// Rounding is to nearest, ties to even, of <c>x[c] · (qmax / max)</c>. An all-zero row gets scale 0 and
/// codes 0. Codes never reach −128, which the AVX2 sign trick (<c>vpsignb</c>) relies on.
/// </remarks>
internal static class RowQuantizer
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
        int c = Vector256.IsHardwareAccelerated ? QuantizeVectorized(row, inverse, maxCode, codes) : 0;
        for (; c < row.Length; c++)
            codes[c] = (sbyte)Math.Clamp((int)MathF.Round(row[c] * inverse), -maxCode, maxCode);
        return maxMagnitude / maxCode;
    }

    // codes[c] = clamp(round_even(row[c] · inverse), −maxCode, maxCode), 32 at a time (the scalar loop's exact
    // result: the same float product, ties-to-even rounding and saturating conversion); returns the columns done.
    private static int QuantizeVectorized(ReadOnlySpan<float> row, float inverse, int maxCode, Span<sbyte> codes)
    {
        Vector256<float> scale = Vector256.Create(inverse);
        Vector256<int> high = Vector256.Create(maxCode), low = Vector256.Create(-maxCode);
        int c = 0;
        for (; c + 32 <= row.Length; c += 32)
        {
            Vector256<short> first = Vector256.Narrow(Code(row, c, scale, low, high), Code(row, c + 8, scale, low, high));
            Vector256<short> second = Vector256.Narrow(Code(row, c + 16, scale, low, high), Code(row, c + 24, scale, low, high));
            Vector256.Narrow(first, second).AsSByte().CopyTo(codes.Slice(c, 32));
        }
        return c;
    }

    private static Vector256<int> Code(ReadOnlySpan<float> row, int c, Vector256<float> scale, Vector256<int> low, Vector256<int> high) =>
        Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(row.Slice(c, 8)) * scale)), low), high);
}
