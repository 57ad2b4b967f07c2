namespace AgileQuant.Core.Quantization;

/// <summary>
/// 4-bit log2 quantizer for softmax probabilities p in [0, 1]: <c>e = round_half_even(-log2 p)</c>;
/// code <c>q = clamp(e, 0, 15)</c> with dequantized value <c>2^-q</c>; entries with <c>e >= 16</c> and p = 0
/// get <see cref="ZeroCode"/>, which dequantizes to exactly 0 (the Agile-Quant/FQ-ViT rule). Values above 1
/// clamp to code 0 (= 1.0).
/// </summary>
/// <remarks>
/// There are 17 outcomes (2^0 .. 2^-15 and 0), so a code is a byte: 0..15 or <see cref="ZeroCode"/>;
/// a packed 4-bit form must carry the zero flag separately.
/// </remarks>
public static class Log2Quantizer
{
    /// <summary>Largest exponent code; <c>2^-15</c> is the smallest nonzero value.</summary>
    public const byte MaxExponent = 15;

    /// <summary>Code for probabilities that round to <c>2^-16</c> or below (and for p = 0): dequantizes to 0.</summary>
    public const byte ZeroCode = 16;

    /// <summary>Code of one probability (see the type's formula).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> is NaN, infinite or negative.</exception>
    public static byte Quantize(float p)
    {
        if (!float.IsFinite(p) || p < 0)
            throw new ArgumentOutOfRangeException(nameof(p), p, "expected a finite probability >= 0");
        return QuantizeValid(p);
    }

    /// <summary><c>codes[i] = Quantize(p[i])</c>.</summary>
    /// <exception cref="NonFiniteValueException">An entry is NaN or ±Infinity.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An entry is negative.</exception>
    public static void Quantize(ReadOnlySpan<float> p, Span<byte> codes)
    {
        if (codes.Length < p.Length)
            throw new ArgumentException($"codes too short: expected {p.Length} elements, found {codes.Length}", nameof(codes));
        NonFiniteValueException.ThrowIfAny(p, Math.Max(p.Length, 1), nameof(p));
        for (int i = 0; i < p.Length; i++)
        {
            if (p[i] < 0)
                throw new ArgumentOutOfRangeException(nameof(p), $"p[{i}] = {p[i]}: expected a probability >= 0");
            codes[i] = QuantizeValid(p[i]);
        }
    }

    /// <summary><c>2^-code</c> for codes 0..15; 0 for <see cref="ZeroCode"/>.</summary>
    public static float Dequantize(byte code)
    {
        if (code > ZeroCode)
            throw new ArgumentOutOfRangeException(nameof(code), code, $"expected 0..{MaxExponent} or {ZeroCode}");
        return code == ZeroCode ? 0f : MathF.ScaleB(1f, -code);
    }

    /// <summary><c>p[i] = Dequantize(codes[i])</c>.</summary>
    public static void Dequantize(ReadOnlySpan<byte> codes, Span<float> p)
    {
        if (p.Length < codes.Length)
            throw new ArgumentException($"destination too short: expected {codes.Length} elements, found {p.Length}", nameof(p));
        for (int i = 0; i < codes.Length; i++) p[i] = Dequantize(codes[i]);
    }

    private static byte QuantizeValid(float p)
    {
        if (p == 0) return ZeroCode;
        double exponent = Math.Round(-Math.Log2(p), MidpointRounding.ToEven);
        if (exponent > MaxExponent) return ZeroCode;
        return (byte)Math.Max(exponent, 0);
    }
}
