using AgileQuant.Intrinsics.Quantization;

namespace AgileQuant.Tests.Intrinsics;

public sealed class RowQuantizerTests
{
    [Test]
    public void EightBitUsesMaxOver127AndRoundsToNearestEven()
    {
        // s = 2.54 / 127 = 0.02; x / s = 127, -63.5 (tie → -64), 0.5 (tie → 0), 1.49.
        float[] row = [2.54f, -1.27f, 0.01f, 0.0298f];
        var codes = new sbyte[4];
        float scale = RowQuantizer.QuantizeSymmetric(row, 8, codes);
        Assert.That(scale, Is.EqualTo(0.02f).Within(1e-7f));
        Assert.That(codes, Is.EqualTo(new sbyte[] { 127, -64, 0, 1 }));
    }

    [Test]
    public void FourBitUsesMaxOver7AndNeverReachesMinus8()
    {
        float[] row = [-7f, 3.5f, 6.9f, -2.5f];
        var codes = new sbyte[4];
        float scale = RowQuantizer.QuantizeSymmetric(row, 4, codes);
        Assert.That(scale, Is.EqualTo(1f));
        Assert.That(codes, Is.EqualTo(new sbyte[] { -7, 4, 7, -2 }));
    }

    [Test]
    public void ZeroRowHasZeroScaleAndCodes()
    {
        var codes = new sbyte[] { 5, 5, 5 };
        Assert.That(RowQuantizer.QuantizeSymmetric(new float[3], 8, codes), Is.Zero);
        Assert.That(codes, Is.All.Zero);
    }

    [Test]
    public void DequantizedCodesAreWithinHalfAStep()
    {
        float[] row = MatMulReference.RandomValues(1000, seed: 3);
        var codes = new sbyte[row.Length];
        float scale = RowQuantizer.QuantizeSymmetric(row, 8, codes);
        for (int i = 0; i < row.Length; i++) Assert.That(Math.Abs(codes[i] * scale - row[i]), Is.LessThanOrEqualTo(scale / 2 * 1.0001f));
        Assert.That(codes.Min(), Is.GreaterThanOrEqualTo(-127));
    }

    [TestCase(8)]
    [TestCase(4)]
    public void EveryLengthMatchesTheElementwiseDefinitionIncludingTies(int bits)
    {
        // max |x| = maxCode ⇒ inverse = 1 exactly, and half the values sit on ties k + 0.5, so the SIMD and tail paths must round alike.
        int maxCode = bits == 8 ? 127 : 7;
        for (int length = 1; length <= 300; length++)
        {
            float[] row = MatMulReference.RandomValues(length, seed: length);
            for (int i = 0; i < length; i++) row[i] *= maxCode - 1;
            for (int i = 0; i < length; i += 2) row[i] = MathF.Round(row[i]) + 0.5f;
            row[length / 2] = maxCode;
            var codes = new sbyte[length];
            float scale = RowQuantizer.QuantizeSymmetric(row, bits, codes);
            float max = row.Max(MathF.Abs), inverse = maxCode / max;
            Assert.That(scale, Is.EqualTo(max / maxCode));
            for (int c = 0; c < length; c++)
                Assert.That(codes[c], Is.EqualTo((sbyte)Math.Clamp((int)MathF.Round(row[c] * inverse, MidpointRounding.ToEven), -maxCode, maxCode)), $"length {length}, column {c}");
        }
    }

    [Test]
    public void RejectsOtherBitWidthsAndShortDestinations()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RowQuantizer.QuantizeSymmetric([1f], 6, new sbyte[1]));
        Assert.Throws<ArgumentException>(() => RowQuantizer.QuantizeSymmetric([1f, 2f], 8, new sbyte[1]));
    }
}
