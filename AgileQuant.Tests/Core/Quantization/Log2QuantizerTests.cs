using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class Log2QuantizerTests
{
    [TestCase(1f, 0)]
    [TestCase(0.5f, 1)]
    [TestCase(0.3f, 2)]           // -log2 0.3 = 1.737 -> 2
    [TestCase(0.25f, 2)]
    [TestCase(0.2f, 2)]           // 2.32 -> 2
    [TestCase(0.1f, 3)]           // 3.32 -> 3
    [TestCase(0.04f, 5)]          // 4.64 -> 5
    [TestCase(1.5f, 0)]           // above 1 clamps to 2^0
    [TestCase(3.0517578e-5f, 15)] // 2^-15
    [TestCase(2.3e-5f, 15)]       // 15.41 -> 15
    [TestCase(2.0e-5f, 16)]       // 15.61 -> 16: becomes 0
    [TestCase(1.5258789e-5f, 16)] // 2^-16
    [TestCase(1e-30f, 16)]
    [TestCase(0f, 16)]
    public void Quantize_MatchesRoundedNegativeLog2(float p, int expected)
    {
        Assert.That(Log2Quantizer.Quantize(p), Is.EqualTo((byte)expected));
    }

    [Test]
    public void Dequantize_IsPowerOfTwoOrZero()
    {
        Assert.That(Log2Quantizer.Dequantize(0), Is.EqualTo(1f));
        Assert.That(Log2Quantizer.Dequantize(3), Is.EqualTo(0.125f));
        Assert.That(Log2Quantizer.Dequantize(15), Is.EqualTo(1f / 32768f));
        Assert.That(Log2Quantizer.Dequantize(Log2Quantizer.ZeroCode), Is.EqualTo(0f));
        Assert.Throws<ArgumentOutOfRangeException>(() => Log2Quantizer.Dequantize(17));
    }

    [Test]
    public void SpanRoundTrip_OnASoftmaxRow()
    {
        float[] p = [0.5f, 0.3f, 0.15f, 0.05f, 0f];
        var codes = new byte[5];
        Log2Quantizer.Quantize(p, codes);
        // 0.15 -> 2.74 -> 3; 0.05 -> 4.32 -> 4
        Assert.That(codes, Is.EqualTo(new byte[] { 1, 2, 3, 4, 16 }));
        var back = new float[5];
        Log2Quantizer.Dequantize(codes, back);
        Assert.That(back, Is.EqualTo(new[] { 0.5f, 0.25f, 0.125f, 0.0625f, 0f }));
    }

    [Test]
    public void NonFiniteOrNegative_IsRefused()
    {
        var ex = Assert.Throws<NonFiniteValueException>(() => Log2Quantizer.Quantize([0.5f, float.NaN], new byte[2]));
        Assert.That(ex!.Column, Is.EqualTo(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Log2Quantizer.Quantize([0.5f, -0.1f], new byte[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Log2Quantizer.Quantize(float.PositiveInfinity));
    }
}
