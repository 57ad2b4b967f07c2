using AgileQuant.Core;
using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class RoundToNearestQuantizerTests
{
    [Test]
    public void PerRowSymmetric_HandComputedCodes()
    {
        // row 0: max|x| = 7 -> s = 1; row 1: max|x| = 14 -> s = 2
        float[] w = [7f, -3.5f, 0.5f, 1.5f,
                     14f, -14f, 3f, 5f]; // (2, 4)
        var q = RoundToNearestQuantizer.Quantize(w, 2, 4, new QuantizerSettings { Bits = 4, Symmetric = true });
        Assert.That((q.GroupSize, q.GroupCount, q.Symmetric, q.ZeroPoints), Is.EqualTo((4, 1, true, (byte[]?)null)));
        Assert.That(q.Scales, Is.EqualTo(new[] { 1f, 2f }));
        Assert.That(q.SignedCodes.ToArray(), Is.EqualTo(new sbyte[] { 7, -4, 0, 2, 7, -7, 2, 2 }));
        Assert.That(q.Dequantize(), Is.EqualTo(new[] { 7f, -4f, 0f, 2f, 14f, -14f, 4f, 4f }));
    }

    [Test]
    public void PerGroupAsymmetric_HandComputedCodesAndZeroPoints()
    {
        // group 0 [-1, 14]: s = 1, z = 1; group 1 [0, 30] (min 2 widened to 0): s = 2, z = 0
        float[] w = [-1f, 0f, 2f, 14f, 2f, 30f, 5f, 9f]; // (1, 8)
        var q = RoundToNearestQuantizer.Quantize(w, 1, 8, new QuantizerSettings { Bits = 4, GroupSize = 4 });
        Assert.That(q.GroupCount, Is.EqualTo(2));
        Assert.That(q.Scales, Is.EqualTo(new[] { 1f, 2f }));
        Assert.That(q.ZeroPoints, Is.EqualTo(new byte[] { 1, 0 }));
        // 5/2 = 2.5 -> 2, 9/2 = 4.5 -> 4 (ties to even)
        Assert.That(q.Codes, Is.EqualTo(new byte[] { 0, 1, 3, 15, 1, 15, 2, 4 }));
        Assert.That(q.GetCode(0, 7), Is.EqualTo(4));
    }

    [Test]
    public void AllZeroRows_DequantizeToExactZeros([Values] bool symmetric, [Values(0, 32)] int groupSize)
    {
        var w = new float[3 * 64]; // (3, 64)
        for (int c = 0; c < 64; c++) w[64 + c] = c % 2 == 0 ? 0.5f : -1f; // only row 1 is nonzero
        var q = RoundToNearestQuantizer.Quantize(w, 3, 64, new QuantizerSettings { Bits = 4, Symmetric = symmetric, GroupSize = groupSize });
        var back = q.Dequantize();
        Assert.That(q.Scales, Has.All.GreaterThan(0f));
        Assert.That(back.Take(64), Has.All.EqualTo(0f));
        Assert.That(back.Skip(128), Has.All.EqualTo(0f));
        Assert.That(back.Skip(64).Take(64), Has.None.NaN);
    }

    [Test]
    public void SingleOutlier_OnlyCoarsensItsOwnGroup()
    {
        // values 1 and -0.25 everywhere, one outlier 100 at column 3
        var w = new float[64];
        for (int c = 0; c < 64; c++) w[c] = c % 2 == 0 ? 1f : -0.25f;
        w[3] = 100f;
        var settings = new QuantizerSettings { Bits = 4, Symmetric = true };
        var perRow = RoundToNearestQuantizer.Quantize(w, 1, 64, settings);
        var grouped = RoundToNearestQuantizer.Quantize(w, 1, 64, settings with { GroupSize = 32 });
        // per row: s = 100/7, so 1 -> round(0.07) = 0 and the outlier -> 7
        Assert.That(perRow.GetCode(0, 3), Is.EqualTo(7));
        Assert.That(perRow.GetCode(0, 40), Is.EqualTo(0));
        // g32: group 1 has s = 1/7: 1 -> 7, -0.25 -> round(-1.75) = -2; group 0 is as coarse as per row
        Assert.That(grouped.GetCode(0, 40), Is.EqualTo(7));
        Assert.That(grouped.GetCode(0, 41), Is.EqualTo(-2));
        Assert.That(grouped.GetCode(0, 0), Is.EqualTo(0));
        Assert.That(grouped.Scales[1], Is.EqualTo(1f / 7f).Within(1e-7f));
    }

    [Test]
    public void ShortLastGroup_Width172Group32_HasSixGroupsLastOfTwelve()
    {
        const int cols = 172;
        var w = new float[2 * cols]; // (2, 172)
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < cols; c++)
                w[r * cols + c] = c >= 160 ? (c - 159) * 0.5f * (r + 1) : (c % 2 == 0 ? 0.7f : -0.7f);
        var q = RoundToNearestQuantizer.Quantize(w, 2, cols, new QuantizerSettings { Bits = 4, Symmetric = true, GroupSize = 32 });
        Assert.That(q.GroupCount, Is.EqualTo(6));
        Assert.That(q.Scales, Has.Length.EqualTo(12));
        // last group holds columns 160..171 = 0.5 .. 6 (row 0) and 1 .. 12 (row 1): s = 6/7 and 12/7
        Assert.That(q.Scales[5], Is.EqualTo(6f / 7f).Within(1e-6f));
        Assert.That(q.Scales[11], Is.EqualTo(12f / 7f).Within(1e-6f));
        Assert.That(q.Scales[4], Is.EqualTo(0.1f).Within(1e-7f));
        // column 171 is the group maximum -> 7; column 160 = 0.5 / (6/7) = 0.583 -> 1
        Assert.That(q.GetCode(0, 171), Is.EqualTo(7));
        Assert.That(q.GetCode(0, 160), Is.EqualTo(1));
        Assert.That(q.Dequantize()[171], Is.EqualTo(6f).Within(1e-6f));
    }

    [Test]
    public void SymmetricCodeRange_DefaultNeverUsesMostNegative_HalfRangeDoes()
    {
        var w = QuantizationTestData.Gaussian(16 * 96, seed: 11); // (16, 96)
        var def = RoundToNearestQuantizer.Quantize(w, 16, 96, new QuantizerSettings { Bits = 4, Symmetric = true, GroupSize = 32 });
        var half = RoundToNearestQuantizer.Quantize(w, 16, 96,
            new QuantizerSettings { Bits = 4, Symmetric = true, GroupSize = 32, ScaleConvention = SymmetricScaleConvention.MaxAbsOverHalfRange });
        Assert.That(def.SignedCodes.ToArray(), Has.All.InRange(-7, 7));
        Assert.That(half.SignedCodes.ToArray(), Has.All.InRange(-8, 7));
        Assert.That(half.SignedCodes.ToArray(), Does.Contain((sbyte)-8)); // some group's extreme is negative
    }

    [Test]
    public void AsymmetricCodes_SpanFullRange_AndErrorIsAtMostHalfAStep()
    {
        var w = QuantizationTestData.Gaussian(8 * 128, seed: 12); // (8, 128)
        var q = RoundToNearestQuantizer.Quantize(w, 8, 128, new QuantizerSettings { Bits = 4, GroupSize = 64 });
        var back = q.Dequantize();
        Assert.That(q.Codes, Has.All.InRange(0, 15));
        Assert.That(q.Codes, Does.Contain((byte)0).And.Contain((byte)15));
        for (int i = 0; i < w.Length; i++)
        {
            float step = q.Scales[(i / 128) * 2 + (i % 128) / 64];
            Assert.That(Math.Abs(back[i] - w[i]), Is.LessThanOrEqualTo(0.5f * step * 1.0001f), $"element {i}");
        }
    }

    [Test]
    public void NonFiniteWeight_IsRefused_NamingRowAndColumn()
    {
        var w = new float[4 * 10];
        w[2 * 10 + 5] = float.NaN;
        var ex = Assert.Throws<NonFiniteValueException>(() => RoundToNearestQuantizer.Quantize(w, 4, 10, new QuantizerSettings()));
        Assert.That((ex!.Row, ex.Column), Is.EqualTo((2, 5)));
        Assert.That(ex.Message, Does.Contain("weight[2, 5]").And.Contain("NaN"));
        Assert.That(ex, Is.InstanceOf<AgileQuantException>());
        w[2 * 10 + 5] = float.PositiveInfinity;
        Assert.Throws<NonFiniteValueException>(() => RoundToNearestQuantizer.Quantize(w, 4, 10, new QuantizerSettings()));
    }

    [Test]
    public void ShapeMismatch_IsRefused()
    {
        Assert.Throws<ArgumentException>(() => RoundToNearestQuantizer.Quantize(new float[10], 3, 4, new QuantizerSettings()));
        Assert.Throws<ArgumentOutOfRangeException>(() => RoundToNearestQuantizer.Quantize(new float[12], 3, 4, new QuantizerSettings { Bits = 1 }));
    }
}
