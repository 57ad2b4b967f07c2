using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class ActivationQuantizerTests
{
    [Test]
    public void QuantizeRows_PerTokenSymmetric8Bit_HandComputed()
    {
        // token 0: max|x| = 127 -> s = 1; token 1: max|x| = 254 -> s = 2; token 2: zeros -> s = 1
        float[] x = [127f, -63.5f, 0.5f,
                     -254f, 3f, 5f,
                     0f, 0f, 0f]; // (3, 3)
        var q = ActivationQuantizer.QuantizeRows(x, 3, 3, 8);
        Assert.That(q.Scales, Is.EqualTo(new[] { 1f, 2f, 1f }));
        // -63.5 -> -64, 0.5 -> 0, 3/2 = 1.5 -> 2, 5/2 = 2.5 -> 2 (ties to even)
        Assert.That(q.SignedCodes.ToArray(), Is.EqualTo(new sbyte[] { 127, -64, 0, -127, 2, 2, 0, 0, 0 }));
        Assert.That(q.Dequantize().Skip(6), Has.All.EqualTo(0f));
    }

    [Test]
    public void QuantizeRows_PerTokenAsymmetric4Bit()
    {
        float[] x = [-1f, 14f, 0.5f]; // (1, 3): s = 1, z = 1
        var q = ActivationQuantizer.QuantizeRows(x, 1, 3, 4, symmetric: false);
        Assert.That(q.ZeroPoints, Is.EqualTo(new byte[] { 1 }));
        Assert.That(q.Codes, Is.EqualTo(new byte[] { 0, 15, 1 }));
    }

    [Test]
    public void QuantizeRowSymmetric_MatchesQuantizeRows_AndUsesHalfRangeOnRequest()
    {
        float[] row = [7.5f, -7.5f, 3f, 6.6f];
        var codes = new sbyte[4];
        float s = ActivationQuantizer.QuantizeRowSymmetric(row, codes, 4, SymmetricScaleConvention.MaxAbsOverHalfRange);
        Assert.That(s, Is.EqualTo(1f));
        Assert.That(codes, Is.EqualTo(new sbyte[] { 7, -8, 3, 7 }));
        var viaRows = ActivationQuantizer.QuantizeRows(row, 1, 4, 4, convention: SymmetricScaleConvention.MaxAbsOverHalfRange);
        Assert.That(viaRows.SignedCodes.ToArray(), Is.EqualTo(codes));
    }

    [Test]
    public void NonFiniteActivation_IsRefused_NamingTokenAndChannel()
    {
        var x = new float[2 * 5];
        x[1 * 5 + 3] = float.PositiveInfinity;
        var ex = Assert.Throws<NonFiniteValueException>(() => ActivationQuantizer.QuantizeRows(x, 2, 5, 8));
        Assert.That((ex!.Row, ex.Column), Is.EqualTo((1, 3)));
        Assert.Throws<NonFiniteValueException>(() => ActivationQuantizer.QuantizeRowSymmetric([1f, float.NaN], new sbyte[2], 8));
    }
}
