using System.Numerics;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// Scale, zero point and code range of one uniform quantizer (one row, one group or one tensor):
/// <c>q = clamp(round(x / Scale) + ZeroPoint, MinCode, MaxCode)</c> and <c>x̂ = Scale · (q - ZeroPoint)</c>,
/// where <c>round</c> is round-half-to-even (as <c>torch.round</c>), computed in double precision.
/// Symmetric: <c>ZeroPoint = 0</c>, codes <c>[-2^(b-1), 2^(b-1)-1]</c>. Asymmetric: codes <c>[0, 2^b-1]</c>.
/// </summary>
public readonly record struct UniformQuantizationParameters
{
    /// <summary>Smallest bit width the uniform quantizers accept.</summary>
    public const int MinBits = 2;

    /// <summary>Largest bit width the uniform quantizers accept (codes fit in a byte).</summary>
    public const int MaxBits = 8;

    private UniformQuantizationParameters(float scale, int zeroPoint, int bits, bool symmetric)
    {
        Scale = scale;
        ZeroPoint = zeroPoint;
        Bits = bits;
        Symmetric = symmetric;
    }

    /// <summary>Step between adjacent codes; always positive and finite.</summary>
    public float Scale { get; }

    /// <summary>Code that represents 0.0 exactly (0 for symmetric quantizers).</summary>
    public int ZeroPoint { get; }

    /// <summary>Bit width b.</summary>
    public int Bits { get; }

    /// <summary>True for signed codes with zero point 0; false for unsigned codes with a zero point.</summary>
    public bool Symmetric { get; }

    /// <summary>Smallest code: <c>-2^(b-1)</c> if symmetric, else 0.</summary>
    public int MinCode => Symmetric ? -(1 << (Bits - 1)) : 0;

    /// <summary>Largest code: <c>2^(b-1)-1</c> if symmetric, else <c>2^b-1</c>.</summary>
    public int MaxCode => Symmetric ? (1 << (Bits - 1)) - 1 : (1 << Bits) - 1;

    /// <summary>
    /// Symmetric parameters for values whose largest magnitude is <paramref name="maxAbs"/>:
    /// <c>s = maxAbs / (2^(b-1)-1)</c> or <c>s = maxAbs / ((2^b-1)/2)</c> per <paramref name="convention"/>.
    /// <c>maxAbs = 0</c> gives <c>s = 1</c>, so all-zero data dequantizes to exact zeros.
    /// </summary>
    public static UniformQuantizationParameters CreateSymmetric(
        double maxAbs, int bits, SymmetricScaleConvention convention = SymmetricScaleConvention.MaxAbsOverPositiveLimit)
    {
        ValidateBits(bits);
        if (!double.IsFinite(maxAbs) || maxAbs < 0)
            throw new ArgumentOutOfRangeException(nameof(maxAbs), maxAbs, "expected a finite value >= 0");
        double divisor = convention switch
        {
            SymmetricScaleConvention.MaxAbsOverPositiveLimit => (1 << (bits - 1)) - 1,
            SymmetricScaleConvention.MaxAbsOverHalfRange => ((1 << bits) - 1) / 2.0,
            _ => throw new ArgumentOutOfRangeException(nameof(convention), convention, "unknown scale convention"),
        };
        float scale = maxAbs == 0 ? 1f : PositiveScale(maxAbs / divisor);
        return new UniformQuantizationParameters(scale, 0, bits, symmetric: true);
    }

    /// <summary>
    /// Asymmetric parameters for values in [<paramref name="min"/>, <paramref name="max"/>]. The range is
    /// first widened to include 0 (as GPTQ's quantizer does) so that 0.0 is exact:
    /// <c>lo = min(min, 0)</c>, <c>hi = max(max, 0)</c>, <c>s = (hi - lo) / (2^b-1)</c>, <c>z = round(-lo / s)</c>.
    /// <c>lo = hi = 0</c> gives <c>s = 1, z = 0</c>, so all-zero data dequantizes to exact zeros.
    /// </summary>
    public static UniformQuantizationParameters CreateAsymmetric(double min, double max, int bits)
    {
        ValidateBits(bits);
        if (!double.IsFinite(min) || !double.IsFinite(max) || min > max)
            throw new ArgumentOutOfRangeException(nameof(min), $"expected finite min <= max, found [{min}, {max}]");
        double lo = Math.Min(min, 0), hi = Math.Max(max, 0);
        if (hi == lo) return new UniformQuantizationParameters(1f, 0, bits, symmetric: false);
        int maxCode = (1 << bits) - 1;
        float scale = PositiveScale((hi - lo) / maxCode);
        int zero = (int)Math.Clamp(Math.Round(-lo / scale, MidpointRounding.ToEven), 0, maxCode);
        return new UniformQuantizationParameters(scale, zero, bits, symmetric: false);
    }

    /// <summary>
    /// Parameters fitted to <paramref name="values"/> (a row, a group or a whole tensor; float or double): symmetric
    /// from <c>max|x|</c>, asymmetric from <c>min(x)</c>, <c>max(x)</c>. Values must be finite.
    /// </summary>
    public static UniformQuantizationParameters Fit<T>(
        ReadOnlySpan<T> values, QuantizerSettings settings)
        where T : INumber<T>
    {
        ArgumentNullException.ThrowIfNull(settings);
        UniformQuantizationParameters full = Fit(values, settings.Bits, settings.Symmetric, settings.ScaleConvention);
        if (!settings.ClipSearch || full.Scale == 0) return full;
        T min = T.Zero, max = T.Zero;
        foreach (T v in values)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        double lo = double.CreateChecked(min), hi = double.CreateChecked(max);
        UniformQuantizationParameters best = full;
        double bestError = double.PositiveInfinity;
        // p = 1 − i/100 for i < 80, as the reference's grid = 100, maxshrink = 0.8
        for (int i = 0; i < 80; i++)
        {
            double p = 1 - i / 100.0;
            UniformQuantizationParameters candidate = settings.Symmetric
                ? CreateSymmetric(Math.Max(-lo, hi) * p, settings.Bits, settings.ScaleConvention)
                : CreateAsymmetric(lo * p, hi * p, settings.Bits);
            double error = 0;
            foreach (T v in values)
            {
                double x = double.CreateChecked(v);
                error += Math.Pow(Math.Abs(candidate.Dequantize(candidate.Quantize(x)) - x), 2.4);
                if (error >= bestError) break;
            }
            if (error < bestError) { bestError = error; best = candidate; }
        }
        return best;
    }

    /// <summary>Fits parameters to the min/max of <paramref name="values"/> (see the other overload for the clip search).</summary>
    public static UniformQuantizationParameters Fit<T>(
        ReadOnlySpan<T> values, int bits, bool symmetric, SymmetricScaleConvention convention)
        where T : INumber<T>
    {
        T min = T.Zero, max = T.Zero;
        foreach (T v in values)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        double lo = double.CreateChecked(min), hi = double.CreateChecked(max);
        return symmetric ? CreateSymmetric(Math.Max(-lo, hi), bits, convention) : CreateAsymmetric(lo, hi, bits);
    }

    /// <summary><c>q = clamp(round_half_even(x / Scale) + ZeroPoint, MinCode, MaxCode)</c>, in double precision.</summary>
    public int Quantize(double x)
    {
        double q = Math.Round(x / Scale, MidpointRounding.ToEven) + ZeroPoint;
        return (int)Math.Clamp(q, MinCode, MaxCode);
    }

    /// <summary><c>x̂ = Scale · (q - ZeroPoint)</c>.</summary>
    public float Dequantize(int code) => Scale * (code - ZeroPoint);

    /// <summary>Quantizes each finite <paramref name="values"/>[i] to a signed code (symmetric parameters only).</summary>
    public void Quantize(ReadOnlySpan<float> values, Span<sbyte> codes)
    {
        if (!Symmetric) throw new InvalidOperationException("signed codes need symmetric parameters; use the byte overload");
        ValidateLengths(values.Length, codes.Length);
        NonFiniteValueException.ThrowIfAny(values, Math.Max(values.Length, 1), nameof(values));
        for (int i = 0; i < values.Length; i++) codes[i] = (sbyte)Quantize(values[i]);
    }

    /// <summary>Quantizes each finite <paramref name="values"/>[i] to an unsigned code (asymmetric parameters only).</summary>
    public void Quantize(ReadOnlySpan<float> values, Span<byte> codes)
    {
        if (Symmetric) throw new InvalidOperationException("unsigned codes need asymmetric parameters; use the sbyte overload");
        ValidateLengths(values.Length, codes.Length);
        NonFiniteValueException.ThrowIfAny(values, Math.Max(values.Length, 1), nameof(values));
        for (int i = 0; i < values.Length; i++) codes[i] = (byte)Quantize(values[i]);
    }

    /// <summary><c>values[i] = Scale · codes[i]</c> for signed codes.</summary>
    public void Dequantize(ReadOnlySpan<sbyte> codes, Span<float> values)
    {
        ValidateLengths(codes.Length, values.Length);
        for (int i = 0; i < codes.Length; i++) values[i] = Dequantize(codes[i]);
    }

    /// <summary><c>values[i] = Scale · (codes[i] - ZeroPoint)</c> for unsigned codes.</summary>
    public void Dequantize(ReadOnlySpan<byte> codes, Span<float> values)
    {
        ValidateLengths(codes.Length, values.Length);
        for (int i = 0; i < codes.Length; i++) values[i] = Dequantize(codes[i]);
    }

    internal static void ValidateBits(int bits)
    {
        if (bits is < MinBits or > MaxBits)
            throw new ArgumentOutOfRangeException(nameof(bits), bits, $"expected {MinBits}..{MaxBits} bits");
    }

    internal static UniformQuantizationParameters FromStored(float scale, int zeroPoint, int bits, bool symmetric) =>
        new(scale, zeroPoint, bits, symmetric);

    // A range so small that s underflows float would divide by zero; the smallest positive float keeps s > 0.
    private static float PositiveScale(double scale) => Math.Max((float)scale, float.Epsilon);

    private static void ValidateLengths(int source, int destination)
    {
        if (destination < source)
            throw new ArgumentException($"destination too short: expected at least {source} elements, found {destination}");
    }
}
