using AgileQuant.Core.Quantization;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Core.Quantization;

/// <summary>
/// The quantizers' codes through the packed formats and the integer kernels equal the arithmetic written out
/// by hand: exact integer dot products per group, then the float epilogue — i.e. dequantize W and x, multiply
/// in double precision (issue bar: 1e-5 relative).
/// </summary>
[TestFixture]
public class IntegerMatMulPipelineTests
{
    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    // x̂[c] = s·round(x[c]/s), s = max|x|/qmax (ties to even) — the per-token activation quantizer of docs/method.md §1
    private static double[] DequantizedActivations(ReadOnlySpan<float> x, int bits)
    {
        double qmax = (1 << (bits - 1)) - 1, max = 0;
        foreach (float v in x) max = Math.Max(max, Math.Abs(v));
        float s = (float)(max / qmax), inv = (float)(qmax / max);
        var result = new double[x.Length];
        for (int c = 0; c < x.Length; c++) result[c] = (double)s * Math.Clamp(MathF.Round(x[c] * inv), -qmax, qmax);
        return result;
    }

    [TestCase(4, 8, 32, false, KernelPreference.Scalar)]
    [TestCase(4, 4, 32, false, KernelPreference.Scalar)]
    [TestCase(4, 8, 64, true, KernelPreference.Scalar)]
    [TestCase(8, 8, 0, true, KernelPreference.Scalar)]
    [TestCase(4, 8, 32, false, KernelPreference.Auto)]
    [TestCase(4, 4, 128, true, KernelPreference.Auto)]
    [TestCase(8, 8, 0, true, KernelPreference.Auto)]
    public void KernelOutputEqualsDequantizeThenMultiply(int weightBits, int activationBits, int groupSize, bool symmetric, KernelPreference isa)
    {
        const int rows = 7, cols = 172, tokens = 3; // 172 = five groups of 32 and a short one of 12
        float[] w = Random(rows * cols, 1), x = Random(tokens * cols, 2);
        var settings = new QuantizerSettings { Bits = weightBits, GroupSize = groupSize, Symmetric = symmetric };
        QuantizedMatrix q = RoundToNearestQuantizer.Quantize(w, rows, cols, settings);
        IWeightMatrix packed = weightBits == 8
            ? new Int8RowMatrix(q.SignedCodes, q.Scales, rows, cols)
            : symmetric ? PackedInt4Matrix.FromSymmetricCodes(q.SignedCodes, q.Scales, rows, cols, q.GroupSize)
            : PackedInt4Matrix.FromAsymmetricCodes(q.Codes, q.Scales, q.ZeroPoints, rows, cols, q.GroupSize);
        float[] wHat = q.Dequantize();
        IMatMulKernel kernel = KernelSelector.Create(new KernelOptions { Preference = isa, ActivationBits = activationBits, Threads = 1 });
        float[] y = new float[tokens * rows];
        kernel.MatMul(packed, x, y, tokens);
        for (int t = 0; t < tokens; t++)
        {
            double[] xHat = DequantizedActivations(x.AsSpan(t * cols, cols), activationBits);
            for (int r = 0; r < rows; r++)
            {
                double expected = 0, magnitude = 0;
                for (int c = 0; c < cols; c++)
                {
                    expected += wHat[r * cols + c] * xHat[c];
                    magnitude += Math.Abs(wHat[r * cols + c] * xHat[c]);
                }
                Assert.That(y[t * rows + r], Is.EqualTo(expected).Within(1e-5 * magnitude + 1e-7), $"token {t} row {r}");
            }
        }
    }

    [Test]
    public void GroupAccumulatorsAreExactIntegerDotProducts()
    {
        const int rows = 5, cols = 172, groupSize = 32;
        float[] w = Random(rows * cols, 3), x = Random(cols, 4);
        QuantizedMatrix q = RoundToNearestQuantizer.Quantize(w, rows, cols, new QuantizerSettings { Bits = 4, GroupSize = groupSize });
        PackedInt4Matrix packed = PackedInt4Matrix.FromAsymmetricCodes(q.Codes, q.Scales, q.ZeroPoints, rows, cols, groupSize);
        // x codes at 8 bits, written out independently
        double max = x.Max(v => Math.Abs(v));
        sbyte[] xq = x.Select(v => (sbyte)Math.Clamp(MathF.Round(v * (float)(127 / max)), -127, 127)).ToArray();
        var accumulators = new int[packed.GroupCount];
        for (int r = 0; r < rows; r++)
        {
            AgileQuant.Intrinsics.Scalar.ScalarInt4Kernel.GroupAccumulators(packed, r, xq, accumulators);
            for (int g = 0; g < packed.GroupCount; g++)
            {
                long exact = 0;
                for (int c = g * groupSize; c < Math.Min(cols, (g + 1) * groupSize); c++)
                    exact += (long)(q.GetCode(r, c) - q.ZeroPoints![r * q.GroupCount + g]) * xq[c];
                Assert.That(accumulators[g], Is.EqualTo(exact), $"row {r} group {g}");
            }
        }
    }
}
