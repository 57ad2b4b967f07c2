namespace AgileQuant.Intrinsics.Trip;

/// <summary>
/// Static per-tensor activation scales of one linear input (TRIP, Agile-Quant arXiv 2312.05693): the scale of the
/// 8-bit codes and the scale of the 4-bit codes that "lower-bit" tokens use, both fixed by calibration.
/// </summary>
/// <param name="EightBit">s₈ = R / 127, R the calibrated max |x| of the tensor.</param>
/// <param name="FourBit">s₄ = R / 7.</param>
public readonly record struct StaticActivationScales(float EightBit, float FourBit)
{
    /// <summary>The scale for <paramref name="bits"/> (8 or 4).</summary>
    public float For(int bits) => bits switch
    {
        8 => EightBit,
        4 => FourBit,
        _ => throw new ArgumentOutOfRangeException(nameof(bits), bits, "Expected 4 or 8 activation bits."),
    };
}
