using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class UniformQuantizationParametersTests
{
    private static int[] Codes(UniformQuantizationParameters p, params float[] x) => x.Select(v => p.Quantize(v)).ToArray();

    [Test]
    public void Symmetric4Bit_MaxOverSeven_RoundsHalfToEven()
    {
        // s = 7 / 7 = 1; -3.5 -> -4, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 (ties to even)
        var p = UniformQuantizationParameters.CreateSymmetric(7, 4);
        Assert.That(p.Scale, Is.EqualTo(1f));
        Assert.That(p.ZeroPoint, Is.Zero);
        Assert.That(Codes(p, 7f, -3.5f, 0.5f, -7f, 1.5f, 2.5f, 1f, -2.4f),
            Is.EqualTo(new[] { 7, -4, 0, -7, 2, 2, 1, -2 }));
    }

    [Test]
    public void Symmetric4Bit_BothConventions_OnTheSameVector()
    {
        float[] x = [7.5f, -7.5f, 3f, -0.5f, 6.6f];
        // max|x| / 7 = 1.0714...: 7.5 -> 7, -7.5 -> -7, 3/1.0714 = 2.8 -> 3, -0.467 -> 0, 6.16 -> 6
        var positiveLimit = UniformQuantizationParameters.CreateSymmetric(7.5, 4, SymmetricScaleConvention.MaxAbsOverPositiveLimit);
        Assert.That(positiveLimit.Scale, Is.EqualTo(7.5f / 7f).Within(1e-7f));
        Assert.That(Codes(positiveLimit, x), Is.EqualTo(new[] { 7, -7, 3, 0, 6 }));
        // max|x| / 7.5 = 1: 7.5 -> 8 (even) clamped to 7, -7.5 -> -8 (uses the 16th level), -0.5 -> 0, 6.6 -> 7
        var halfRange = UniformQuantizationParameters.CreateSymmetric(7.5, 4, SymmetricScaleConvention.MaxAbsOverHalfRange);
        Assert.That(halfRange.Scale, Is.EqualTo(1f));
        Assert.That(Codes(halfRange, x), Is.EqualTo(new[] { 7, -8, 3, 0, 7 }));
    }

    [Test]
    public void Symmetric8Bit_BothConventions()
    {
        var p = UniformQuantizationParameters.CreateSymmetric(127, 8);
        Assert.That(Codes(p, 127f, -127f, 63.5f, -0.5f, 1f, 200f), Is.EqualTo(new[] { 127, -127, 64, 0, 1, 127 }));
        var half = UniformQuantizationParameters.CreateSymmetric(127.5, 8, SymmetricScaleConvention.MaxAbsOverHalfRange);
        Assert.That(half.Scale, Is.EqualTo(1f));
        Assert.That(Codes(half, 127.5f, -127.5f, 0.5f, 1.5f), Is.EqualTo(new[] { 127, -128, 0, 2 }));
        Assert.That((half.MinCode, half.MaxCode), Is.EqualTo((-128, 127)));
    }

    [Test]
    public void Asymmetric4Bit_ScaleZeroPointAndCodes()
    {
        // lo = -1, hi = 14: s = 15/15 = 1, z = round(1) = 1; q = round(x) + 1
        var p = UniformQuantizationParameters.CreateAsymmetric(-1, 14, 4);
        Assert.That((p.Scale, p.ZeroPoint, p.MinCode, p.MaxCode), Is.EqualTo((1f, 1, 0, 15)));
        Assert.That(Codes(p, -1f, 0f, 2f, 14f, 0.5f, 2.5f, -5f), Is.EqualTo(new[] { 0, 1, 3, 15, 1, 3, 0 }));
        Assert.That(p.Dequantize(1), Is.EqualTo(0f));
        Assert.That(p.Dequantize(3), Is.EqualTo(2f));
    }

    [Test]
    public void Asymmetric4Bit_ZeroPointRoundsHalfToEven_AndTopClamps()
    {
        // lo = -3, hi = 27: s = 30/15 = 2, z = round(1.5) = 2; -3 -> round(-1.5) + 2 = 0; 27 -> round(13.5) + 2 = 16 -> 15
        var p = UniformQuantizationParameters.CreateAsymmetric(-3, 27, 4);
        Assert.That((p.Scale, p.ZeroPoint), Is.EqualTo((2f, 2)));
        Assert.That(Codes(p, -3f, 27f, 0f), Is.EqualTo(new[] { 0, 15, 2 }));
        Assert.That(p.Dequantize(0), Is.EqualTo(-4f));
        Assert.That(p.Dequantize(15), Is.EqualTo(26f));
    }

    [Test]
    public void Asymmetric_PositiveOnlyRange_IncludesZero()
    {
        // [3, 15] widens to [0, 15]: s = 1, z = 0
        var p = UniformQuantizationParameters.CreateAsymmetric(3, 15, 4);
        Assert.That((p.Scale, p.ZeroPoint), Is.EqualTo((1f, 0)));
        Assert.That(Codes(p, 3f, 6f, 15f, 7.5f), Is.EqualTo(new[] { 3, 6, 15, 8 }));
    }

    [Test]
    public void Asymmetric_NegativeOnlyRange_IncludesZero()
    {
        // [-15, -3] widens to [-15, 0]: s = 1, z = 15; -7.5 -> round(-7.5) = -8 -> 7
        var p = UniformQuantizationParameters.CreateAsymmetric(-15, -3, 4);
        Assert.That((p.Scale, p.ZeroPoint), Is.EqualTo((1f, 15)));
        Assert.That(Codes(p, -15f, -3f, -7.5f), Is.EqualTo(new[] { 0, 12, 7 }));
        Assert.That(p.Dequantize(7), Is.EqualTo(-8f));
    }

    [Test]
    public void Asymmetric8Bit()
    {
        // lo = -1, hi = 254: s = 1, z = 1
        var p = UniformQuantizationParameters.CreateAsymmetric(-1, 254, 8);
        Assert.That((p.Scale, p.ZeroPoint), Is.EqualTo((1f, 1)));
        Assert.That(Codes(p, -1f, 254f, 100.5f), Is.EqualTo(new[] { 0, 255, 101 }));
    }

    [Test]
    public void AllZeroRange_HasUsableScale_AndDequantizesToExactZero()
    {
        foreach (var p in new[]
                 {
                     UniformQuantizationParameters.CreateSymmetric(0, 4),
                     UniformQuantizationParameters.CreateSymmetric(0, 8, SymmetricScaleConvention.MaxAbsOverHalfRange),
                     UniformQuantizationParameters.CreateAsymmetric(0, 0, 4),
                 })
        {
            Assert.That(p.Scale, Is.GreaterThan(0f).And.Not.NaN);
            Assert.That(p.Dequantize(p.Quantize(0)), Is.EqualTo(0f));
        }
    }

    [Test]
    public void Bits_OutsideTwoToEight_AreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => UniformQuantizationParameters.CreateSymmetric(1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => UniformQuantizationParameters.CreateAsymmetric(-1, 1, 9));
        Assert.Throws<ArgumentOutOfRangeException>(() => UniformQuantizationParameters.CreateSymmetric(double.NaN, 4));
    }

    [Test]
    public void SpanQuantize_RefusesNonFinite_NamingTheIndex()
    {
        var p = UniformQuantizationParameters.CreateSymmetric(1, 8);
        var ex = Assert.Throws<NonFiniteValueException>(() => p.Quantize([0.5f, 0.25f, float.NegativeInfinity], new sbyte[3]));
        Assert.That(ex!.Column, Is.EqualTo(2));
        Assert.That(ex.Message, Does.Contain("-Infinity"));
        Assert.Throws<ArgumentException>(() => p.Quantize([0.5f, 0.25f], new sbyte[1]));
    }
}
