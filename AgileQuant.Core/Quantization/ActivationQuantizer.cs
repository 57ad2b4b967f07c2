namespace AgileQuant.Core.Quantization;

/// <summary>
/// Dynamic per-token activation quantization: every row (token) of a (tokens, dim) matrix gets its own
/// scale computed on the fly. Symmetric: <c>s_t = max_c |x[t, c]| / (2^(b-1)-1)</c> (or the half-range
/// convention) and <c>q[t, c] = clamp(round(x[t, c] / s_t), -2^(b-1), 2^(b-1)-1)</c>, round half to even.
/// Static per-tensor activation scales come from <see cref="MinMaxObserver"/> instead.
/// </summary>
public static class ActivationQuantizer
{
    /// <summary>Quantizes each row of <paramref name="x"/>, (tokens, dim), with its own scale (and zero point).</summary>
    /// <exception cref="NonFiniteValueException">An entry is NaN or ±Infinity.</exception>
    public static QuantizedMatrix QuantizeRows(ReadOnlySpan<float> x, int tokens, int dim, int bits, bool symmetric = true,
        SymmetricScaleConvention convention = SymmetricScaleConvention.MaxAbsOverPositiveLimit) =>
        RoundToNearestQuantizer.Quantize(x, tokens, dim,
            new QuantizerSettings { Bits = bits, Symmetric = symmetric, GroupSize = 0, ScaleConvention = convention });

    /// <summary>
    /// Allocation-free symmetric quantization of one token: writes <c>codes[c] = clamp(round(row[c] / s), -2^(b-1), 2^(b-1)-1)</c>
    /// and returns <c>s</c>.
    /// </summary>
    /// <exception cref="NonFiniteValueException">An entry is NaN or ±Infinity.</exception>
    public static float QuantizeRowSymmetric(ReadOnlySpan<float> row, Span<sbyte> codes, int bits,
        SymmetricScaleConvention convention = SymmetricScaleConvention.MaxAbsOverPositiveLimit)
    {
        UniformQuantizationParameters.ValidateBits(bits);
        if (codes.Length < row.Length)
            throw new ArgumentException($"codes too short: expected {row.Length} elements, found {codes.Length}", nameof(codes));
        NonFiniteValueException.ThrowIfAny(row, Math.Max(row.Length, 1), nameof(row));
        var p = UniformQuantizationParameters.Fit(row, bits, symmetric: true, convention);
        p.Quantize(row, codes);
        return p.Scale;
    }
}
