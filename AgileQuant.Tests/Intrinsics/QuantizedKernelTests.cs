using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>Integer kernels: SIMD int32 group sums equal the scalar twin's exactly and outputs agree up to float rounding; scalar within the quantization budget of fp32.</summary>
public sealed class QuantizedKernelTests
{
    /// <summary>(tokens, cols, rows).</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] Shapes =
    [
        (11, 512, 21), (7, 172, 3), (1, 1, 1), (5, 33, 17), (3, 4096, 64), (1, 11008, 24), (9, 288, 40), (2, 768, 5), (64, 100, 9),
    ];

    /// <summary>Every SIMD int4 kernel of the catalog supported here, at 1 and 2 threads and both activation widths.</summary>
    private static IEnumerable<TestCaseData> SimdInt4Kernels() => SimdKernels(CatalogKernels.Int4);

    private static IEnumerable<TestCaseData> SimdInt8Kernels() => SimdKernels(CatalogKernels.Int8);

    private static IEnumerable<TestCaseData> SimdKernels(IWeightMatrix format)
    {
        foreach (int bits in new[] { 8, 4 })
            foreach (int threads in new[] { 1, 2 })
                foreach (IMatMulKernel kernel in CatalogKernels.Simd(format, bits, threads))
                    yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x{threads}");
    }

    [TestCaseSource(nameof(SimdInt4Kernels))]
    public void Int4EqualsScalarForEveryLengthUpTo256(IMatMulKernel kernel, int bits)
    {
        var scalar = new ScalarInt4Kernel(bits);
        for (int cols = 1; cols <= 256; cols++)
            foreach (int groupSize in new[] { 32, 64, 128 })
                AssertSameAsScalar(kernel, scalar, Int4Weights(rows: 5, cols, groupSize, asymmetric: cols % 2 == 0, seed: cols), tokens: 1 + cols % 6, seed: cols);
    }

    [TestCaseSource(nameof(SimdInt4Kernels))]
    public void Int4EqualsScalarOnOddAndModelShapes(IMatMulKernel kernel, int bits)
    {
        var scalar = new ScalarInt4Kernel(bits);
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach (int groupSize in new[] { 32, 128 })
                foreach (bool asymmetric in new[] { false, true })
                    AssertSameAsScalar(kernel, scalar, Int4Weights(rows, cols, groupSize, asymmetric, seed: rows + cols), tokens, seed: tokens);
    }

    [TestCaseSource(nameof(SimdInt8Kernels))]
    public void Int8EqualsScalarForEveryLengthAndShape(IMatMulKernel kernel, int bits)
    {
        var scalar = new ScalarInt8Kernel(bits);
        for (int cols = 1; cols <= 256; cols++) AssertSameAsScalar(kernel, scalar, Int8Weights(rows: 6, cols, seed: cols), tokens: 1 + cols % 7, seed: cols);
        foreach ((int tokens, int cols, int rows) in Shapes) AssertSameAsScalar(kernel, scalar, Int8Weights(rows, cols, seed: rows), tokens, seed: cols);
    }

    [Test]
    public unsafe void Avx2Int4SegmentAccumulatorsEqualScalarSumsExactly()
    {
        if (!Avx2Int4Kernel.IsSupported) Assert.Ignore("AVX2 is not enabled here; the scalar path is covered by the reference tests");
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach (int groupSize in new[] { 32, 64, 128 })
                foreach (bool asymmetric in new[] { false, true })
                {
                    PackedInt4Matrix w = Int4Weights(rows, cols, groupSize, asymmetric, seed: cols);
                    var xq = new QuantizedActivations();
                    xq.Quantize(MatMulReference.RandomValues(tokens * cols, seed: rows), tokens, cols, 8, 32, ActivationOrder.Plain);
                    int segments = (cols + 31) / 32;
                    var actual = new int[segments * 8];
                    for (int b = 0; b < (rows + 7) / 8; b++)
                        for (int t = 0; t < tokens; t++)
                        {
                            fixed (sbyte* x = xq.Codes)
                            fixed (int* acc = actual)
                                Avx2Int4Kernel.SegmentAccumulators(w, b, x + t * xq.Stride, acc);
                            for (int i = 0; i < 8 && 8 * b + i < rows; i++)
                                for (int s = 0; s < segments; s++)
                                {
                                    // Σ_{c∈s} (nibble − z) · x_q, straight from the row-major matrix
                                    int r = 8 * b + i, z = w.ZeroPoint(r, s * 32 / groupSize), expected = 0;
                                    for (int c = s * 32; c < Math.Min(cols, s * 32 + 32); c++) expected += (w.Nibble(r, c) - z) * xq.Codes[t * xq.Stride + c];
                                    Assert.That(actual[s * 8 + i], Is.EqualTo(expected), $"({tokens},{cols},{rows}) g{groupSize} row {r} token {t} segment {s}");
                                }
                        }
                }
    }

    [Test]
    public unsafe void Avx2Int8BlockSumsEqualScalarAccumulatorsExactly()
    {
        if (!Avx2Int8Kernel.IsSupported) Assert.Ignore("AVX2 is not enabled here; the scalar path is covered by the reference tests");
        foreach ((int tokens, int cols, int rows) in Shapes)
        {
            Int8RowMatrix w = Int8Weights(rows, cols, seed: cols);
            Int8RowBlocks blocks = w.RepackToRowBlocks();
            var xq = new QuantizedActivations();
            xq.Quantize(MatMulReference.RandomValues(tokens * cols, seed: rows), tokens, cols, 8, w.RowStride, ActivationOrder.Plain);
            var actual = new int[6 * 8];
            for (int b = 0; b < blocks.Blocks; b++)
                for (int t0 = 0; t0 < tokens; t0 += 6)
                {
                    int n = Math.Min(6, tokens - t0);
                    fixed (sbyte* codes = blocks.Codes)
                    fixed (sbyte* x = xq.Codes)
                    fixed (int* acc = actual)
                        Avx2Int8Kernel.BlockSums(codes + b * blocks.Chunks * 32, blocks.Chunks, x + t0 * xq.Stride, xq.Stride, n, acc);
                    for (int j = 0; j < n; j++)
                        for (int i = 0; i < 8 && 8 * b + i < rows; i++)
                            Assert.That(actual[j * 8 + i], Is.EqualTo(ScalarInt8Kernel.RowAccumulator(w, 8 * b + i, xq.Codes.AsSpan((t0 + j) * xq.Stride, cols))),
                                $"({tokens},{cols},{rows}) row {8 * b + i} token {t0 + j}");
                }
        }
    }

    [TestCase(8, false)]
    [TestCase(8, true)]
    [TestCase(4, false)]
    [TestCase(4, true)]
    public void ScalarInt4IsWithinActivationRoundingOfFp32(int bits, bool asymmetric)
    {
        foreach ((int tokens, int cols, int rows) in Shapes)
        {
            PackedInt4Matrix w = Int4Weights(rows, cols, groupSize: 64, asymmetric, seed: 3);
            AssertWithinQuantizationBudget(new ScalarInt4Kernel(bits), w, (r, c) => w.Dequantize(r, c), bits, tokens, seed: cols);
        }
    }

    [TestCase(8)]
    [TestCase(4)]
    public void ScalarInt8IsWithinActivationRoundingOfFp32(int bits)
    {
        foreach ((int tokens, int cols, int rows) in Shapes)
        {
            Int8RowMatrix w = Int8Weights(rows, cols, seed: 4);
            AssertWithinQuantizationBudget(new ScalarInt8Kernel(bits), w, (r, c) => w.Scales[r] * w.Code(r, c), bits, tokens, seed: cols);
        }
    }

    internal static PackedInt4Matrix Int4Weights(int rows, int cols, int groupSize, bool asymmetric, int seed)
    {
        var random = new Random(seed);
        int groups = rows * ((cols + groupSize - 1) / groupSize);
        float[] scales = Enumerable.Range(0, groups).Select(_ => (float)(0.01 + 0.1 * random.NextDouble())).ToArray();
        if (!asymmetric)
            return PackedInt4Matrix.FromSymmetricCodes(Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-8, 8)).ToArray(), scales, rows, cols, groupSize);
        byte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (byte)random.Next(0, 16)).ToArray();
        byte[] zeros = Enumerable.Range(0, groups).Select(_ => (byte)random.Next(0, 16)).ToArray();
        return PackedInt4Matrix.FromAsymmetricCodes(codes, scales, zeros, rows, cols, groupSize);
    }

    internal static Int8RowMatrix Int8Weights(int rows, int cols, int seed)
    {
        var random = new Random(seed);
        sbyte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-128, 128)).ToArray();
        return new Int8RowMatrix(codes, Enumerable.Range(0, rows).Select(_ => (float)(0.001 + 0.01 * random.NextDouble())).ToArray(), rows, cols);
    }

    private static void AssertSameAsScalar(IMatMulKernel kernel, QuantizedMatMulKernel<PackedInt4Matrix> scalar, IWeightMatrix w, int tokens, int seed) =>
        AssertSameAsScalar(kernel, scalar, scalar.ActivationBits, w, tokens, seed);

    private static void AssertSameAsScalar(IMatMulKernel kernel, QuantizedMatMulKernel<Int8RowMatrix> scalar, IWeightMatrix w, int tokens, int seed) =>
        AssertSameAsScalar(kernel, scalar, scalar.ActivationBits, w, tokens, seed);

    private static void AssertSameAsScalar(IMatMulKernel kernel, IMatMulKernel scalar, int bits, IWeightMatrix w, int tokens, int seed)
    {
        float[] x = MatMulReference.RandomValues(tokens * w.Cols, seed);
        var expected = new float[tokens * w.Rows];
        scalar.MatMul(w, x, expected, tokens);
        GuardedBuffer input = GuardedBuffer.Around(x);
        var output = new GuardedBuffer(tokens * w.Rows, sentinel: -9876.5f, fill: float.NaN);
        kernel.MatMul(w, input.Inner, output.Inner, tokens);
        string what = $"{kernel.Name} (tokens {tokens}, cols {w.Cols}, rows {w.Rows})";
        output.AssertMarginsIntact(what);
        // Exact int32 group sums on both sides; only the float epilogue's summation order may differ.
        Func<int, int, float> weight = w switch
        {
            PackedInt4Matrix w4 => w4.Dequantize,
            Int8RowMatrix w8 => (r, c) => w8.Scales[r] * w8.Code(r, c),
            _ => throw new ArgumentException("unknown format", nameof(w)),
        };
        double[] tolerance = KernelSelfTest.QuantizedTolerance(x, tokens, bits, w.Rows, w.Cols, weight);
        MatMulReference.AssertClose(output.Inner, expected, tolerance, what);
    }

    /// <summary>
    /// |y − Σ_c W[r, c] · x[t, c]| ≤ (s_x / 2) · Σ_c |W[r, c]| (activation rounding) + float rounding, with W the
    /// dequantized weights, computed independently of the kernels in double precision.
    /// </summary>
    private static void AssertWithinQuantizationBudget(IMatMulKernel kernel, IWeightMatrix w, Func<int, int, float> weight, int bits, int tokens, int seed)
    {
        int rows = w.Rows, cols = w.Cols;
        float[] x = MatMulReference.RandomValues(tokens * cols, seed);
        var y = new float[tokens * rows];
        kernel.MatMul(w, x, y, tokens);
        int maxCode = bits == 8 ? 127 : 7;
        for (int t = 0; t < tokens; t++)
        {
            double step = x.AsSpan(t * cols, cols).ToArray().Max(Math.Abs) / maxCode;
            for (int r = 0; r < rows; r++)
            {
                double exact = 0, magnitude = 0, weightSum = 0;
                for (int c = 0; c < cols; c++)
                {
                    double wc = weight(r, c);
                    exact += wc * x[t * cols + c];
                    magnitude += Math.Abs(wc * x[t * cols + c]);
                    weightSum += Math.Abs(wc);
                }
                double budget = step / 2 * weightSum * 1.0001 + 1e-5 * (magnitude + step * weightSum) + 1e-12;
                Assert.That(Math.Abs(y[t * rows + r] - exact), Is.LessThanOrEqualTo(budget), $"{kernel.Name} ({tokens},{cols},{rows}) t{t} r{r}");
            }
        }
    }
}
