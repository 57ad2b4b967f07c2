using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// Grouped 8-bit weights (<see cref="GroupedInt8Matrix"/>): every SIMD kernel of the catalog against the scalar twin up to
/// float rounding, and against the exact integer product on long rows (11008) and extreme codes; the scalar twin within
/// the activation-rounding budget of the FP32 product.
/// </summary>
public sealed class GroupedInt8KernelTests
{
    /// <summary>(tokens, cols, rows): odd shapes, short last groups, one token (the stream), GEMM tiles, and 64+ tokens (AVX-512's sign-variant route).</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] Shapes =
    [
        (11, 512, 21), (7, 172, 3), (1, 1, 1), (5, 33, 17), (3, 4096, 64), (1, 11008, 24), (9, 288, 40), (2, 768, 5), (64, 100, 9),
        (72, 256, 40), (65, 520, 37), (1, 256, 33),
    ];

    private static IEnumerable<TestCaseData> SimdKernels()
    {
        foreach (int bits in new[] { 8, 4 })
            foreach (int threads in new[] { 1, 2 })
                foreach (IMatMulKernel kernel in CatalogKernels.Simd(CatalogKernels.GroupedInt8, bits, threads))
                    yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x{threads}");
    }

    private static IEnumerable<TestCaseData> AllKernels()
    {
        foreach (int bits in new[] { 8, 4 })
        {
            yield return new TestCaseData(new ScalarGroupedInt8Kernel(bits), bits).SetArgDisplayNames($"w8g-a{bits}-scalar");
            foreach (IMatMulKernel kernel in CatalogKernels.Simd(CatalogKernels.GroupedInt8, bits, threads: 2))
                yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x2");
        }
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void EqualsScalarForEveryLengthUpTo256(IMatMulKernel kernel, int bits)
    {
        var scalar = new ScalarGroupedInt8Kernel(bits);
        GroupedInt8Layout[] layouts = Enum.GetValues<GroupedInt8Layout>();
        for (int cols = 1; cols <= 256; cols++)
        {
            GroupedInt8Layout layout = layouts[cols % layouts.Length];
            GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(cols), rows: 5 + cols % 4, cols, layout, symmetricCodes: false);
            AssertSameAsScalar(kernel, scalar, w, tokens: 1 + cols % 6, seed: cols, $"{layout}");
        }
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void EqualsScalarOnOddAndModelShapes(IMatMulKernel kernel, int bits)
    {
        var scalar = new ScalarGroupedInt8Kernel(bits);
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach (GroupedInt8Layout layout in Enum.GetValues<GroupedInt8Layout>())
            {
                GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(rows + cols), rows, cols, layout, symmetricCodes: tokens % 2 == 0);
                AssertSameAsScalar(kernel, scalar, w, tokens, seed: tokens, $"{layout}");
            }
    }

    /// <summary>
    /// Unit scales and integer activations whose largest magnitude per token is the largest code (token scale 1): every
    /// kernel must return <c>Σ_g (Σ_{c∈g} q · x − o_g · Σ_{c∈g} x)</c> exactly, on rows of 11008 columns, with every weight
    /// code at an extreme of its format (−128 and 127 for 8-bit codes; ±127 only where the AVX-512 sign-variant route must
    /// run, which −128 sends to the AVX2 tiles), integer offsets, and the GEMV, GEMM-tile and sign-variant paths. Exact
    /// because the test checks that every partial sum of the group results stays below 2^24 (a float holds it).
    /// </summary>
    [TestCaseSource(nameof(AllKernels))]
    public void ExactIntegerProductOnLongRowsAndExtremeCodes(IMatMulKernel kernel, int bits)
    {
        int maxCode = bits == 8 ? 127 : 7;
        foreach ((int tokens, int rows) in new[] { (1, 24), (9, 17), (Avx512Int8Kernel.VariantMinTokens + 6, 33) })
            foreach (string layout in new[] { "q8", "q8-symmetric", "q6k", "q5k", "q51" })
            {
                const int cols = 11008;
                var random = new Random(tokens * 31 + rows + layout.Length);
                (GroupedInt8Matrix w, Func<int, int, int> offset) = UnitScaleWeights(random, layout, rows, cols);
                float[] x = IntegerActivations(random, tokens, cols, maxCode);
                sbyte[] codes = w.Codes.ToArray(); // (rows, RowStride), read before a kernel repacks the matrix
                var output = new GuardedBuffer(tokens * rows, sentinel: -9876.5f, fill: float.NaN);
                kernel.MatMul(w, x, output.Inner, tokens);
                string what = $"{kernel.Name} {layout} ({rows}x{cols}, {tokens} tokens)";
                output.AssertMarginsIntact(what);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        long partial = 0;
                        for (int g = 0; g < w.GroupCount; g++)
                        {
                            long groupSum = 0, activationSum = 0;
                            for (int c = g * w.GroupSize; c < Math.Min(cols, (g + 1) * w.GroupSize); c++)
                            {
                                groupSum += codes[r * w.RowStride + c] * (long)x[t * cols + c];
                                activationSum += (long)x[t * cols + c];
                            }
                            partial += groupSum - offset(r, g) * activationSum;
                            if (Math.Abs(partial) >= 1 << 24) Assert.Fail($"{what}: the test's data must keep partial sums exact in float, found {partial}");
                        }
                        float actual = output.Inner[t * rows + r];
                        if (actual != partial) Assert.Fail($"{what}: y[{t}, {r}] = {actual}, expected {partial}");
                    }
            }
    }

    [TestCase(8)]
    [TestCase(4)]
    public void ScalarIsWithinActivationRoundingOfFp32(int bits)
    {
        foreach ((int tokens, int cols, int rows) in Shapes.Where(s => s.Tokens * s.Cols * s.Rows < 1_000_000))
            foreach (GroupedInt8Layout layout in Enum.GetValues<GroupedInt8Layout>())
            {
                GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(cols), rows, cols, layout, symmetricCodes: false);
                float[] x = MatMulReference.RandomValues(tokens * cols, seed: rows);
                var y = new float[tokens * rows];
                new ScalarGroupedInt8Kernel(bits).MatMul(w, x, y, tokens);
                int maxCode = bits == 8 ? 127 : 7;
                for (int t = 0; t < tokens; t++)
                {
                    double step = x.AsSpan(t * cols, cols).ToArray().Max(Math.Abs) / maxCode;
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0, magnitude = 0, weightSum = 0;
                        for (int c = 0; c < cols; c++)
                        {
                            double wc = w.Dequantize(r, c);
                            exact += wc * x[t * cols + c];
                            magnitude += Math.Abs(wc * x[t * cols + c]);
                            weightSum += Math.Abs(wc);
                        }
                        // activation rounding (≤ step / 2 per column) plus float rounding of the group terms
                        double budget = step / 2 * weightSum * 1.0001 + 1e-5 * (magnitude + step * weightSum) + 1e-12;
                        Assert.That(Math.Abs(y[t * rows + r] - exact), Is.LessThanOrEqualTo(budget), $"{layout} ({tokens},{cols},{rows}) t{t} r{r}");
                    }
                }
            }
    }

    // Weights whose every scale is 1: codes at the extremes of the layout's range, integer offsets (o(r, g) returned).
    private static (GroupedInt8Matrix Weights, Func<int, int, int> Offset) UnitScaleWeights(Random random, string layout, int rows, int cols)
    {
        sbyte[] Codes(params int[] choices) => Enumerable.Range(0, rows * cols).Select(_ => (sbyte)choices[random.Next(choices.Length)]).ToArray();
        int groups32 = (cols + 31) / 32, groups16 = (cols + 15) / 16;
        switch (layout)
        {
            case "q8": // −128 present: the AVX-512 kernel takes the AVX2 route
                return (GroupedInt8Matrix.FromGroupScales(Codes(-128, 127, -127, 126), Ones(rows * groups32), [], rows, cols, 32), (_, _) => 0);
            case "q8-symmetric":
                return (GroupedInt8Matrix.FromGroupScales(Codes(-127, 127), Ones(rows * groups32), [], rows, cols, 32), (_, _) => 0);
            case "q6k": // super-scale 1 × sub-scale 1
                return (GroupedInt8Matrix.FromSuperBlockScales(Codes(-32, 31), Ones(rows * ((groups16 + 15) / 16)), Enumerable.Repeat((sbyte)1, rows * groups16).ToArray(),
                    [], [], rows, cols, 16, 16), (_, _) => 0);
            case "q5k": // super-offset 1 × sub-offset m (0..63)
                sbyte[] m = Enumerable.Range(0, rows * groups32).Select(_ => (sbyte)random.Next(0, 64)).ToArray();
                int supers = (groups32 + 7) / 8;
                return (GroupedInt8Matrix.FromSuperBlockScales(Codes(0, 31), Ones(rows * supers), Enumerable.Repeat((sbyte)1, rows * groups32).ToArray(),
                    Ones(rows * supers), m, rows, cols, 32, 8), (r, g) => m[r * groups32 + g]);
            default: // "q51": W = q − 16 through a per-group offset of 16 (a half, so the half encoding)
                return (GroupedInt8Matrix.FromGroupScales(Codes(0, 31), Ones(rows * groups32), Enumerable.Repeat(16f, rows * groups32).ToArray(), rows, cols, 32),
                    (_, _) => 16);
        }
    }

    private static float[] Ones(int count) => Enumerable.Repeat(1f, count).ToArray();

    // Integers ±maxCode with a few in between, each token holding ±maxCode once so that its quantization scale is exactly 1.
    private static float[] IntegerActivations(Random random, int tokens, int cols, int maxCode)
    {
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(random.Next(8) == 0 ? random.Next(-maxCode, maxCode + 1) : random.Next(2) == 0 ? -maxCode : maxCode)).ToArray();
        for (int t = 0; t < tokens; t++) x[t * cols + random.Next(cols)] = maxCode;
        return x;
    }

    private static void AssertSameAsScalar(IMatMulKernel kernel, ScalarGroupedInt8Kernel scalar, GroupedInt8Matrix w, int tokens, int seed, string layout)
    {
        float[] x = MatMulReference.RandomValues(tokens * w.Cols, seed);
        var expected = new float[tokens * w.Rows];
        scalar.MatMul(w, x, expected, tokens);
        GuardedBuffer input = GuardedBuffer.Around(x);
        var output = new GuardedBuffer(tokens * w.Rows, sentinel: -9876.5f, fill: float.NaN);
        kernel.MatMul(w, input.Inner, output.Inner, tokens);
        string what = $"{kernel.Name} {layout} (tokens {tokens}, cols {w.Cols}, rows {w.Rows})";
        output.AssertMarginsIntact(what);
        // Exact int32 group sums on both sides; the float epilogue runs in the same order, so only an FMA-less path could differ.
        double[] tolerance = KernelSelfTest.QuantizedTolerance(x, tokens, scalar.ActivationBits, w.Rows, w.Cols, w.Dequantize);
        MatMulReference.AssertClose(output.Inner, expected, tolerance, what);
    }
}
