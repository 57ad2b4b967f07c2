using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Scalar;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>The fused TRIP pass (gather → static quantize → integer matmul → dequantize) against the same steps run one by one.</summary>
[TestFixture]
public class TripMatMulTests
{
    private static float[] RandomValues(int count, int seed, float outlierEvery = 0)
    {
        var random = new Random(seed);
        float[] values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        if (outlierEvery > 0)
            for (int i = 0; i < count; i += (int)outlierEvery) values[i] *= 30; // beyond the static range: clamped
        return values;
    }

    private static Int8RowMatrix Int8Weights(int rows, int cols, int seed)
    {
        var random = new Random(seed);
        sbyte[] codes = new sbyte[rows * cols];
        for (int i = 0; i < codes.Length; i++) codes[i] = (sbyte)random.Next(-128, 128);
        float[] scales = Enumerable.Range(0, rows).Select(r => 0.01f + r * 0.001f).ToArray();
        return new Int8RowMatrix(codes, scales, rows, cols);
    }

    private static PackedInt4Matrix Int4Weights(int rows, int cols, int group, bool symmetric, int seed)
    {
        var random = new Random(seed);
        int groups = (cols + group - 1) / group;
        float[] scales = Enumerable.Range(0, rows * groups).Select(i => 0.02f + (i % 7) * 0.003f).ToArray();
        if (symmetric)
        {
            sbyte[] signed = new sbyte[rows * cols];
            for (int i = 0; i < signed.Length; i++) signed[i] = (sbyte)random.Next(-8, 8);
            return PackedInt4Matrix.FromSymmetricCodes(signed, scales, rows, cols, group);
        }
        byte[] codes = new byte[rows * cols];
        for (int i = 0; i < codes.Length; i++) codes[i] = (byte)random.Next(0, 16);
        byte[] zeros = new byte[rows * groups];
        for (int i = 0; i < zeros.Length; i++) zeros[i] = (byte)random.Next(0, 16);
        return PackedInt4Matrix.FromAsymmetricCodes(codes, scales, zeros, rows, cols, group);
    }

    /// <summary>
    /// The unfused sequence, each step on its own buffer: gather the rows, quantize each with the static scale of its
    /// width, multiply the codes by the weight codes (public accessors, int32 per group), dequantize, scatter.
    /// </summary>
    private static void Unfused(IWeightMatrix w, float[] x, int[] rows, bool[]? lowBit, StaticActivationScales scales, float[] y)
    {
        int cols = w.Cols;
        // 1. gather (rows.Length, cols)
        float[] gathered = new float[rows.Length * cols];
        for (int k = 0; k < rows.Length; k++) Array.Copy(x, rows[k] * cols, gathered, k * cols, cols);
        // 2. quantize with the static scale
        sbyte[] codes = new sbyte[gathered.Length];
        float[] rowScale = new float[rows.Length];
        for (int k = 0; k < rows.Length; k++)
        {
            bool low = lowBit is not null && lowBit[rows[k]];
            rowScale[k] = low ? scales.FourBit : scales.EightBit;
            for (int c = 0; c < cols; c++) codes[k * cols + c] = TripMatMul.QuantizeStatic(gathered[k * cols + c], 1f / rowScale[k], low ? 7 : 127);
        }
        // 3. integer matmul per group, 4. dequantize
        float[] product = new float[rows.Length * w.Rows];
        for (int k = 0; k < rows.Length; k++)
            for (int r = 0; r < w.Rows; r++)
            {
                float sum = 0;
                if (w is Int8RowMatrix m8)
                {
                    int acc = 0;
                    for (int c = 0; c < cols; c++) acc += m8.Code(r, c) * codes[k * cols + c];
                    sum += m8.Scales[r] * acc;
                }
                else
                {
                    var m4 = (PackedInt4Matrix)w;
                    for (int g = 0; g < m4.GroupCount; g++)
                    {
                        int acc = 0;
                        for (int c = g * m4.GroupSize; c < Math.Min(cols, (g + 1) * m4.GroupSize); c++)
                            acc += (m4.Nibble(r, c) - m4.ZeroPoint(r, g)) * codes[k * cols + c];
                        sum += m4.Scale(r, g) * acc;
                    }
                }
                product[k * w.Rows + r] = rowScale[k] * sum;
            }
        // 5. scatter
        for (int k = 0; k < rows.Length; k++) Array.Copy(product, k * w.Rows, y, rows[k] * w.Rows, w.Rows);
    }

    private static IEnumerable<TestCaseData> Matrices()
    {
        yield return new TestCaseData("int8 96x100", Int8Weights(96, 100, 1));
        yield return new TestCaseData("int4 asym g32 40x172", Int4Weights(40, 172, 32, symmetric: false, 2));
        yield return new TestCaseData("int4 sym g64 33x256", Int4Weights(33, 256, 64, symmetric: true, 3));
        yield return new TestCaseData("int4 asym g128 17x200", Int4Weights(17, 200, 128, symmetric: false, 4));
    }

    [TestCaseSource(nameof(Matrices))]
    public void FusedPassEqualsTheUnfusedSequenceExactly(string name, IWeightMatrix w)
    {
        const int n = 70;
        float[] x = RandomValues(n * w.Cols, seed: 11, outlierEvery: 97);
        int[] survivors = Enumerable.Range(0, n).Where(i => i % 3 != 1).ToArray(); // a pruning gather
        bool[] lowBit = Enumerable.Range(0, n).Select(i => i % 5 == 2).ToArray();
        var scales = new StaticActivationScales(1f / 127, 1f / 7);
        foreach (int threads in new[] { 1, 2 })
        foreach (bool[]? flags in new[] { null, lowBit })
        {
            float[] expected = Enumerable.Repeat(42f, n * w.Rows).ToArray();
            float[] actual = (float[])expected.Clone();
            Unfused(w, x, survivors, flags, scales, expected);
            TripMatMul.Multiply(w, x, survivors, flags, scales, actual, threads);
            Assert.That(actual, Is.EqualTo(expected), $"{name}, {threads} threads, lower-bit {flags is not null}");
            Assert.That(actual[w.Rows], Is.EqualTo(42f), "rows not gathered are untouched");
        }
    }

    [TestCaseSource(nameof(Matrices))]
    public void KernelPassEqualsTheUnfusedSequenceUpToTheEpilogueOrder(string name, IWeightMatrix w)
    {
        const int n = 70;
        float[] x = RandomValues(n * w.Cols, seed: 12, outlierEvery: 89);
        int[] survivors = Enumerable.Range(0, n).Where(i => i % 4 != 3).ToArray(); // a pruning gather
        int[] all = Enumerable.Range(0, n).ToArray();                             // every row: written in place
        bool[] lowBit = Enumerable.Range(0, n).Select(i => i % 5 == 2).ToArray();
        var scales = new StaticActivationScales(1f / 127, 1f / 7);
        foreach (int threads in new[] { 1, 2 })
        foreach (int[] rows in new[] { survivors, all })
        foreach (bool[]? flags in new[] { null, lowBit })
        {
            IMatMulKernel kernel = KernelSelector.Create(new KernelOptions { Threads = threads });
            float[] expected = Enumerable.Repeat(42f, n * w.Rows).ToArray();
            float[] actual = (float[])expected.Clone();
            Unfused(w, x, rows, flags, scales, expected);
            TripMatMul.Multiply(kernel, w, x, rows, flags, scales, actual, threads);
            // the integer sums are exact; the kernel's float epilogue may round differently in the last bits
            float tolerance = 1e-5f * expected.Max(MathF.Abs);
            Assert.That(actual, Is.EqualTo(expected).Within(tolerance), $"{name}, {threads} threads, {rows.Length} rows, lower-bit {flags is not null}");
            if (rows == survivors) Assert.That(actual[3 * w.Rows], Is.EqualTo(42f), "rows not gathered are untouched");
        }
    }

    [Test]
    public void FusedPassApproximatesTheFloatProduct()
    {
        PackedInt4Matrix w = Int4Weights(24, 128, 32, symmetric: false, 5);
        const int n = 8;
        float[] x = RandomValues(n * 128, seed: 12);
        float[] y = new float[n * 24];
        TripMatMul.Multiply(w, x, Enumerable.Range(0, n).ToArray(), [], new StaticActivationScales(1f / 127, 1f / 7), y, threads: 1);
        for (int t = 0; t < n; t++)
            for (int r = 0; r < 24; r++)
            {
                double exact = 0, magnitude = 0;
                for (int c = 0; c < 128; c++)
                {
                    exact += w.Dequantize(r, c) * (double)x[t * 128 + c];
                    magnitude += Math.Abs(w.Dequantize(r, c)) * (1.0 / 254);
                }
                // each code is off by at most half a step (1/254): the error is bounded by Σ|w|/254
                Assert.That(y[t * 24 + r], Is.EqualTo(exact).Within(magnitude + 1e-5));
            }
    }

    [Test]
    public void SimdDotEqualsItsScalarTwin()
    {
        if (!Avx2TripTile.IsSupported) Assert.Ignore("AVX2 is not enabled here: the scalar tile is the reference itself");
        var random = new Random(13);
        sbyte[] w = new sbyte[256], x = new sbyte[256];
        for (int i = 0; i < 256; i++)
        {
            w[i] = (sbyte)random.Next(-128, 128);
            x[i] = (sbyte)random.Next(-127, 128);
        }
        w[0] = -128;
        x[0] = -127;
        Assert.That(Avx2TripTile.Dot(w, x), Is.EqualTo(ScalarTripTile.Dot(w, x)));
    }

    [Test]
    public void StaticQuantizerClampsAndRoundsHalfToEven()
    {
        Assert.That(TripMatMul.QuantizeStatic(2.5f, 1f, 127), Is.EqualTo(2));
        Assert.That(TripMatMul.QuantizeStatic(-3.5f, 1f, 127), Is.EqualTo(-4));
        Assert.That(TripMatMul.QuantizeStatic(100f, 1f, 7), Is.EqualTo(7));
        Assert.That(TripMatMul.QuantizeStatic(-1000f, 1f, 127), Is.EqualTo(-127));
        Assert.That(TripMatMul.QuantizeStatic(5f, 0f, 127), Is.EqualTo(0));
    }

    [TestCase(8)]
    [TestCase(4)]
    public void VectorizedStaticQuantizationEqualsTheScalarDefinition(int bits)
    {
        int limit = bits == 4 ? 7 : 127;
        const float Scale = 0.05f;
        var random = new Random(bits);
        float[] special = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, 2.5f * Scale, -3.5f * Scale, 1e30f, -1e30f];
        foreach (int cols in new[] { 1, 7, 31, 32, 33, 64, 95, 200 })
        {
            float[] row = Enumerable.Range(0, cols).Select(c => c % 11 == 5 ? special[c / 11 % special.Length] : (float)(random.NextDouble() * 16 - 8)).ToArray();
            var xq = new AgileQuant.Intrinsics.Quantization.QuantizedActivations();
            xq.Prepare(1, cols, 64);
            xq.QuantizeStaticToken(row, 0, Scale, bits, AgileQuant.Intrinsics.Quantization.ActivationOrder.Plain);
            for (int c = 0; c < cols; c++)
                Assert.That(xq.Codes[c], Is.EqualTo(TripMatMul.QuantizeStatic(row[c], 1f / Scale, limit)), $"{cols} columns, column {c} (x = {row[c]})");
            Assert.That(xq.Scales[0], Is.EqualTo(Scale));
        }
    }

    [Test]
    public void BadArgumentsAreRejected()
    {
        Int8RowMatrix w = Int8Weights(4, 32, 6);
        float[] x = new float[2 * 32], y = new float[2 * 4];
        var scales = new StaticActivationScales(0.1f, 1f);
        Assert.Throws<ArgumentOutOfRangeException>(() => TripMatMul.Multiply(w, x, [2], [], scales, y, 1));
        Assert.Throws<ArgumentException>(() => TripMatMul.Multiply(w, x, [0], [true], scales, y, 1));
        Assert.Throws<ArgumentException>(() => TripMatMul.Multiply(new Fp32Matrix(new float[128], 4, 32), x, [0], [], scales, y, 1));
        Assert.Throws<ArgumentException>(() => TripMatMul.Multiply(w, x, [0], [], scales, new float[3], 1));
    }
}
