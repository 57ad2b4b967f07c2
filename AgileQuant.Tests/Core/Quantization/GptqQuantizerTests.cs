using AgileQuant.Core;
using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class GptqQuantizerTests
{
    private const int Rows = 64, Cols = 172, Samples = 512;

    private static float[] weight = null!;       // (Rows, Cols)
    private static float[] inputs = null!;       // (Samples, Cols), correlated
    private static HessianAccumulator hessian = null!;

    [OneTimeSetUp]
    public void BuildFixture()
    {
        weight = QuantizationTestData.Gaussian(Rows * Cols, seed: 21, scale: 0.05f);
        // X = Z · A with a random mixing A so that H = 2XᵀX/n is far from diagonal
        var z = QuantizationTestData.Gaussian(Samples * Cols, seed: 22);
        var a = QuantizationTestData.Gaussian(Cols * Cols, seed: 23, scale: 1f / MathF.Sqrt(Cols));
        for (int i = 0; i < Cols; i++) a[i * Cols + i] += 0.3f;
        inputs = QuantizationTestData.MatMul(z, a, Samples, Cols, Cols);
        hessian = new HessianAccumulator(Cols);
        hessian.Add(inputs.AsSpan(0, 200 * Cols), 200);
        hessian.Add(inputs.AsSpan(200 * Cols), Samples - 200);
    }

    private static double Error(QuantizedMatrix q) =>
        QuantizationTestData.OutputError(weight, q.Dequantize(), inputs, Rows, Cols, Samples);

    [TestCase(32, false, false)]
    [TestCase(32, false, true)]
    [TestCase(32, true, false)]
    [TestCase(0, false, false)]
    [TestCase(0, true, false)]
    [TestCase(128, false, false)]
    public void Gptq_HasLowerOutputErrorThanRtn_At4Bits(int groupSize, bool actOrder, bool symmetric)
    {
        var settings = new QuantizerSettings { Bits = 4, GroupSize = groupSize, ActOrder = actOrder, Symmetric = symmetric };
        double rtn = Error(RoundToNearestQuantizer.Quantize(weight, Rows, Cols, settings));
        double gptq = Error(GptqQuantizer.Quantize(weight, Rows, Cols, hessian, settings));
        TestContext.Out.WriteLine($"g{groupSize} actOrder={actOrder} sym={symmetric}: ‖(W-Q)Xᵀ‖ RTN {rtn:F4}, GPTQ {gptq:F4} ({gptq / rtn:P1})");
        Assert.That(gptq, Is.LessThan(0.8 * rtn));
    }

    [Test]
    public void HandComputed_ErrorOfFirstColumnMovesToCorrelatedColumn()
    {
        // X rows [2,1,0], [0,1,0], [0,0,1]: H ∝ [[4,2,0],[2,2,0],[0,0,1]], no dampening,
        // H⁻¹ = UᵀU with U[0,0] = √½, U[0,1] = -√½ (see CholeskyFactorizationTests).
        // W = [2.4, 1.3, 7], symmetric 4-bit per row: s = 7/7 = 1.
        // column 0: 2.4 -> 2, e = 0.4/√½; w1 -= e·(-√½) -> 1.3 + 0.4 = 1.7 -> 2 (RTN gives 1); column 2 untouched -> 7.
        var h = new HessianAccumulator(3);
        h.Add([2f, 1f, 0f, 0f, 1f, 0f, 0f, 0f, 1f], 3);
        var settings = new QuantizerSettings { Bits = 4, Symmetric = true, DampeningFraction = 0 };
        float[] w = [2.4f, 1.3f, 7f];
        var gptq = GptqQuantizer.Quantize(w, 1, 3, h, settings);
        var rtn = RoundToNearestQuantizer.Quantize(w, 1, 3, settings);
        Assert.That(gptq.SignedCodes.ToArray(), Is.EqualTo(new sbyte[] { 2, 2, 7 }));
        Assert.That(rtn.SignedCodes.ToArray(), Is.EqualTo(new sbyte[] { 2, 1, 7 }));
    }

    [TestCase(32, false)]
    [TestCase(32, true)]
    [TestCase(0, false)]
    [TestCase(0, true)]
    public void DiagonalHessian_NoPropagation_EqualsRtnExactly(int groupSize, bool actOrder)
    {
        // x_t = c_t · e_t: uncorrelated channels with distinct energies, so act-order really permutes
        var x = new float[Cols * Cols]; // (Cols, Cols)
        for (int t = 0; t < Cols; t++) x[t * Cols + t] = 1f + (t * 37 % Cols) / 10f;
        var h = new HessianAccumulator(Cols);
        h.Add(x, Cols);
        var settings = new QuantizerSettings { Bits = 4, GroupSize = groupSize, ActOrder = actOrder };
        var gptq = GptqQuantizer.Quantize(weight, Rows, Cols, h, settings);
        var rtn = RoundToNearestQuantizer.Quantize(weight, Rows, Cols, settings);
        Assert.That(gptq.Codes, Is.EqualTo(rtn.Codes));
        Assert.That(gptq.Scales, Is.EqualTo(rtn.Scales));
        Assert.That(gptq.ZeroPoints, Is.EqualTo(rtn.ZeroPoints));
    }

    [TestCase(32, false)]
    [TestCase(0, true)]
    public void BlockSize_DoesNotChangeTheResult(int groupSize, bool actOrder)
    {
        // lazy batch updates are a reordering of the same arithmetic as column-by-column propagation
        var settings = new QuantizerSettings { Bits = 4, GroupSize = groupSize, ActOrder = actOrder };
        var blocked = GptqQuantizer.Quantize(weight, Rows, Cols, hessian, settings);
        var sequential = GptqQuantizer.Quantize(weight, Rows, Cols, hessian, settings with { BlockSize = 1 });
        int differing = blocked.Codes.Zip(sequential.Codes).Count(pair => pair.First != pair.Second);
        Assert.That(differing, Is.LessThanOrEqualTo(blocked.Codes.Length / 1000), "codes may differ only at exact rounding ties");
        Assert.That(blocked.Scales, Is.EqualTo(sequential.Scales).Within(1e-6f));
    }

    [Test]
    public void ActOrder_KeepsOriginalColumnGroups_ShortLastGroup()
    {
        var settings = new QuantizerSettings { Bits = 4, GroupSize = 32, ActOrder = true };
        var q = GptqQuantizer.Quantize(weight, Rows, Cols, hessian, settings);
        var rtn = RoundToNearestQuantizer.Quantize(weight, Rows, Cols, settings);
        Assert.That((q.GroupSize, q.GroupCount, q.Scales.Length), Is.EqualTo((32, 6, Rows * 6)));
        // static groups: scales fitted to the original columns of each group, as RTN does
        Assert.That(q.Scales, Is.EqualTo(rtn.Scales));
    }

    [Test]
    public void DeadInputColumn_GetsZeroWeight()
    {
        var x = (float[])inputs.Clone();
        for (int t = 0; t < Samples; t++) x[t * Cols + 5] = 0f; // channel 5 never fires
        var h = new HessianAccumulator(Cols);
        h.Add(x, Samples);
        var q = GptqQuantizer.Quantize(weight, Rows, Cols, h, new QuantizerSettings { Bits = 4, GroupSize = 32 });
        var back = q.Dequantize();
        for (int r = 0; r < Rows; r++) Assert.That(back[r * Cols + 5], Is.EqualTo(0f), $"row {r}");
    }

    [Test]
    public void BadArguments_AreRefused()
    {
        var settings = new QuantizerSettings();
        Assert.Throws<InvalidOperationException>(() => GptqQuantizer.Quantize(weight, Rows, Cols, new HessianAccumulator(Cols), settings));
        Assert.Throws<ArgumentException>(() => GptqQuantizer.Quantize(weight, Rows * 2, Cols / 2, hessian, settings));
        var w = (float[])weight.Clone();
        w[3 * Cols + 7] = float.NaN;
        var ex = Assert.Throws<NonFiniteValueException>(() => GptqQuantizer.Quantize(w, Rows, Cols, hessian, settings));
        Assert.That((ex!.Row, ex.Column), Is.EqualTo((3, 7)));
        Assert.Throws<ArgumentOutOfRangeException>(() => GptqQuantizer.Quantize(weight, Rows, Cols, hessian, settings with { DampeningFraction = -1 }));
    }

    [Test]
    public void RankDeficientHessianWithoutDampening_IsReportedClearly()
    {
        // two identical channels: H is singular and, with no dampening, not positive definite
        var h = new HessianAccumulator(2);
        h.Add([1f, 1f, 2f, 2f], 2);
        var ex = Assert.Throws<AgileQuantException>(() =>
            GptqQuantizer.Quantize([0.1f, 0.2f], 1, 2, h, new QuantizerSettings { DampeningFraction = 0 }));
        Assert.That(ex!.Message, Does.Contain("not positive definite"));
    }
}
