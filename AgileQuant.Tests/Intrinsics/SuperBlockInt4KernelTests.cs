using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// The <see cref="SuperBlockInt4Matrix"/> kernels: every SIMD path of the catalog equals the scalar twin bit for bit (same
/// exact int32 sums, same float epilogue order) on every scheme kind; on data where every float step is exact
/// (unit scales, integer activations, super-blocks of alternating sign) every kernel's output equals the exact integer
/// product Σ W·x at code, scale and activation extremes over 11008-column rows; the scalar twin stays within the
/// activation-rounding budget of the FP32 product of <see cref="SuperBlockInt4Matrix.Dequantize"/>; the format refuses
/// malformed parts and reads back what it was given.
/// </summary>
public sealed class SuperBlockInt4KernelTests
{
    /// <summary>(tokens, cols, rows); cols are rounded up to each scheme's super-block.</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] Shapes =
    [
        (11, 512, 21), (7, 256, 3), (1, 256, 1), (5, 768, 17), (3, 4096, 64), (1, 11008, 24), (9, 2816, 40), (64, 256, 9), (2, 11008, 33), (1, 32, 5),
    ];

    private static IEnumerable<TestCaseData> SimdKernels()
    {
        foreach (int bits in new[] { 8, 4 })
            foreach (int threads in new[] { 1, 2 })
                foreach (IMatMulKernel kernel in CatalogKernels.Simd(CatalogKernels.SuperBlockInt4, bits, threads))
                    yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x{threads}");
    }

    private static IEnumerable<TestCaseData> AllKernels()
    {
        foreach (int bits in new[] { 8, 4 })
        {
            yield return new TestCaseData(new ScalarSuperBlockInt4Kernel(bits), bits).SetArgDisplayNames($"sbw4a{bits}-scalar");
            foreach (IMatMulKernel kernel in CatalogKernels.Simd(CatalogKernels.SuperBlockInt4, bits, threads: 2))
                yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x2");
        }
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void Simd_EqualsScalar_BitForBit_OnEverySchemeAndShape(IMatMulKernel kernel, int bits)
    {
        var scalar = new ScalarSuperBlockInt4Kernel(bits);
        int seed = 0;
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach ((string name, SuperBlockInt4Scheme scheme, int maxCode, int minScale, int maxScale, int maxMin) in SuperBlockInt4SelfTest.Schemes)
            {
                int width = RoundUp(cols, scheme.SuperBlockSize);
                var random = new Random(++seed);
                SuperBlockInt4Matrix w = SuperBlockInt4SelfTest.RandomMatrix(random, scheme, rows, width, maxCode, minScale, maxScale, maxMin);
                float[] x = MatMulReference.RandomValues(tokens * width, seed);
                var expected = new float[tokens * rows];
                scalar.MatMul(w, x, expected, tokens);
                var output = new GuardedBuffer(tokens * rows, sentinel: -9876.5f, fill: float.NaN);
                kernel.MatMul(w, GuardedBuffer.Around(x).Inner, output.Inner, tokens);
                string what = $"{kernel.Name} {name} (tokens {tokens}, cols {width}, rows {rows})";
                output.AssertMarginsIntact(what);
                AssertBitEqual(output.Inner, expected, what);
            }
    }

    [TestCaseSource(nameof(AllKernels))]
    public void Output_EqualsTheExactIntegerProduct_AtExtremes_OnLongRows(IMatMulKernel kernel, int bits)
    {
        int seed = 100;
        foreach ((string name, SuperBlockInt4Scheme scheme, int maxCode, int minScale, int maxScale, int maxMin) in SuperBlockInt4SelfTest.Schemes)
            foreach (int tokens in new[] { 1, 9 })
            {
                const int rows = 37, cols = 11008;
                var random = new Random(++seed);
                SuperBlockInt4Matrix w = ExactnessMatrix(random, scheme, rows, cols, maxCode, minScale, maxScale, maxMin);
                float[] x = ExactnessActivations(random, tokens, cols, scheme.SuperBlockSize, bits == 8 ? 127 : 7);
                var y = new float[tokens * rows];
                kernel.MatMul(w, x, y, tokens);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        long exact = 0; // Σ_c (sc · v(q) − m) · x with d = dmin = 1, straight from the format's parts
                        for (int c = 0; c < cols; c++)
                        {
                            int s = c / scheme.SubBlockSize;
                            exact += ((long)w.SubScale(r, s) * scheme.Value(w.Code(r, c)) - w.SubMin(r, s)) * (long)x[t * cols + c];
                        }
                        Assert.That(Math.Abs(exact), Is.LessThan(1 << 24), "the test data keeps every value exact in float");
                        if (y[t * rows + r] != exact)
                            Assert.Fail($"{kernel.Name} {name} tokens {tokens}: y[{t}, {r}] = {y[t * rows + r]}, the exact product is {exact}");
                    }
            }
    }

    [TestCase(8)]
    [TestCase(4)]
    public void Scalar_IsWithinActivationRoundingOfFp32(int bits)
    {
        var kernel = new ScalarSuperBlockInt4Kernel(bits);
        int seed = 200;
        foreach ((int tokens, int cols, int rows) in Shapes.Where(s => s.Cols <= 4096))
            foreach ((string name, SuperBlockInt4Scheme scheme, int maxCode, int minScale, int maxScale, int maxMin) in SuperBlockInt4SelfTest.Schemes)
            {
                int width = RoundUp(cols, scheme.SuperBlockSize);
                var random = new Random(++seed);
                SuperBlockInt4Matrix w = SuperBlockInt4SelfTest.RandomMatrix(random, scheme, rows, width, maxCode, minScale, maxScale, maxMin);
                float[] x = MatMulReference.RandomValues(tokens * width, seed);
                var y = new float[tokens * rows];
                kernel.MatMul(w, x, y, tokens);
                int maxActivation = bits == 8 ? 127 : 7;
                for (int t = 0; t < tokens; t++)
                {
                    double step = x.AsSpan(t * width, width).ToArray().Max(Math.Abs) / maxActivation;
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0, magnitude = 0, weightSum = 0;
                        for (int c = 0; c < width; c++)
                        {
                            double wc = w.Dequantize(r, c);
                            exact += wc * x[t * width + c];
                            magnitude += Math.Abs(wc * x[t * width + c]);
                            weightSum += Math.Abs(wc);
                        }
                        // activation rounding (≤ half a step per code) + float rounding of the weights and the epilogue
                        double budget = step / 2 * weightSum * 1.0001 + 1e-5 * (magnitude + step * weightSum) + 1e-12;
                        Assert.That(Math.Abs(y[t * rows + r] - exact), Is.LessThanOrEqualTo(budget), $"{name} ({tokens},{width},{rows}) t{t} r{r}");
                    }
                }
            }
    }

    [Test]
    public void Accessors_ReadBackTheParts()
    {
        var random = new Random(7);
        foreach ((_, SuperBlockInt4Scheme scheme, int maxCode, int minScale, int maxScale, int maxMin) in SuperBlockInt4SelfTest.Schemes)
        {
            const int rows = 19;
            int cols = 2 * scheme.SuperBlockSize, subBlocks = cols / scheme.SubBlockSize, superBlocks = cols / scheme.SuperBlockSize;
            byte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (byte)random.Next(maxCode + 1)).ToArray();
            var packed = new byte[rows * cols / 2];
            for (int i = 0; i < codes.Length; i++) packed[i / 2] |= (byte)(codes[i] << 4 * (i % 2));
            Half[] d = Enumerable.Range(0, rows * superBlocks).Select(_ => (Half)(random.NextSingle() - 0.5f)).ToArray();
            Half[] dmin = scheme.HasMins ? Enumerable.Range(0, rows * superBlocks).Select(_ => (Half)random.NextSingle()).ToArray() : [];
            sbyte[] sc = Enumerable.Range(0, rows * subBlocks).Select(_ => (sbyte)random.Next(minScale, maxScale + 1)).ToArray();
            byte[] m = scheme.HasMins ? Enumerable.Range(0, rows * subBlocks).Select(_ => (byte)random.Next(maxMin + 1)).ToArray() : [];
            SuperBlockInt4Matrix w = SuperBlockInt4Matrix.Create(scheme, rows, cols, packed, d, dmin, sc, m);
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++) Assert.That(w.Code(r, c), Is.EqualTo(codes[r * cols + c]), $"code ({r}, {c})");
                for (int s = 0; s < subBlocks; s++)
                {
                    Assert.That(w.SubScale(r, s), Is.EqualTo(sc[r * subBlocks + s]), $"scale ({r}, {s})");
                    Assert.That(w.SubMin(r, s), Is.EqualTo(scheme.HasMins ? m[r * subBlocks + s] : 0), $"min ({r}, {s})");
                }
                for (int b = 0; b < superBlocks; b++)
                {
                    Assert.That(w.SuperScale(r, b), Is.EqualTo(d[r * superBlocks + b]), $"d ({r}, {b})");
                    Assert.That(w.SuperMin(r, b), Is.EqualTo(scheme.HasMins ? dmin[r * superBlocks + b] : Half.Zero), $"dmin ({r}, {b})");
                }
            }
            Assert.That(w.ByteCount, Is.GreaterThanOrEqualTo(rows * cols / 2));
        }
    }

    [Test]
    public void Create_RefusesMalformedParts()
    {
        var mins = new SuperBlockInt4Scheme(32, 256, hasMins: true);
        var offset = new SuperBlockInt4Scheme(16, 256, codeOffset: 4);
        Half[] one = [Half.One];
        Assert.Throws<ArgumentException>(() => SuperBlockInt4Matrix.Create(mins, 1, 200, new byte[100], one, one, new sbyte[8], new byte[8]), "cols not whole super-blocks");
        Assert.Throws<ArgumentException>(() => SuperBlockInt4Matrix.Create(mins, 1, 256, new byte[127], one, one, new sbyte[8], new byte[8]), "short codes");
        Assert.Throws<ArgumentException>(() => SuperBlockInt4Matrix.Create(mins, 1, 256, new byte[128], one, [], new sbyte[8], new byte[8]), "missing minimums");
        Assert.Throws<ArgumentException>(() => SuperBlockInt4Matrix.Create(mins, 1, 256, new byte[128], [Half.NaN], one, new sbyte[8], new byte[8]), "NaN scale");
        Assert.Throws<ArgumentException>(() => SuperBlockInt4Matrix.Create(mins, 1, 256, new byte[128], one, [Half.PositiveInfinity], new sbyte[8], new byte[8]), "infinite minimum");
        Assert.Throws<ArgumentOutOfRangeException>(() => SuperBlockInt4Matrix.Create(mins, 1, 256, new byte[128], one, one, new sbyte[8], [0, 0, 0, 128, 0, 0, 0, 0]), "minimum 128");
        Assert.Throws<ArgumentOutOfRangeException>(() => SuperBlockInt4Matrix.Create(offset, 1, 256, new byte[128], one, [], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32], []), "offset · scale 128");
        Assert.Throws<ArgumentOutOfRangeException>(() => new SuperBlockInt4Scheme(8, 256));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SuperBlockInt4Scheme(32, 512));
        Assert.Throws<ArgumentException>(() => new SuperBlockInt4Scheme(32, 256, codeOffset: 4, hasMins: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SuperBlockInt4Scheme(32, 256, codebook: new sbyte[] { -128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }));
        Assert.Throws<ArgumentException>(() => new SuperBlockInt4Scheme(32, 256, codebook: new sbyte[15]));
    }

    /// <summary>
    /// A matrix on which every float step of the kernels is exact: d = dmin = 1, each row one super-block pattern repeated
    /// (codes at 0, at the maximum, alternating, or random; sub-block scales at their extremes, limited so a super-block's
    /// int32 sum stays below 2^23; minimums at the maximum or random).
    /// </summary>
    private static SuperBlockInt4Matrix ExactnessMatrix(Random random, SuperBlockInt4Scheme scheme, int rows, int cols, int maxCode, int minScale, int maxScale, int maxMin)
    {
        int superSize = scheme.SuperBlockSize, perSuper = scheme.SubBlocksPerSuperBlock;
        int largestValue = scheme.HasCodebook ? 127 : maxCode;
        int scaleLimit = Math.Max(1, (1 << 23) / (superSize * largestValue * 127));
        int lowScale = Math.Max(minScale, -scaleLimit), highScale = Math.Min(maxScale, scaleLimit);
        var packed = new byte[rows * cols / 2];
        var subScales = new sbyte[rows * (cols / scheme.SubBlockSize)];
        byte[] subMins = scheme.HasMins ? new byte[subScales.Length] : [];
        for (int r = 0; r < rows; r++)
        {
            int kind = r % 4;
            int[] codes = Enumerable.Range(0, superSize).Select(c => kind switch { 0 => maxCode, 1 => 0, 2 => c % 2 * maxCode, _ => random.Next(maxCode + 1) }).ToArray();
            int[] scales = Enumerable.Range(0, perSuper).Select(s => ((r + s) % 3) switch { 0 => highScale, 1 => lowScale, _ => random.Next(lowScale, highScale + 1) }).ToArray();
            int[] mins = Enumerable.Range(0, perSuper).Select(s => r % 2 == 0 ? maxMin : random.Next(maxMin + 1)).ToArray();
            for (int c = 0; c < cols; c++) packed[(r * cols + c) / 2] |= (byte)(codes[c % superSize] << 4 * (c % 2));
            for (int s = 0; s < cols / scheme.SubBlockSize; s++)
            {
                subScales[r * (cols / scheme.SubBlockSize) + s] = (sbyte)scales[s % perSuper];
                if (scheme.HasMins) subMins[r * (cols / scheme.SubBlockSize) + s] = (byte)mins[s % perSuper];
            }
        }
        Half[] ones = Enumerable.Repeat(Half.One, rows * (cols / superSize)).ToArray();
        return SuperBlockInt4Matrix.Create(scheme, rows, cols, packed, ones, scheme.HasMins ? ones : [], subScales, subMins);
    }

    /// <summary>
    /// Integer activations whose largest magnitude is <paramref name="maxCode"/> (so the per-token scale is exactly 1 and the
    /// codes are the values), one pattern per super-block with alternating sign: the running sum over super-blocks returns to
    /// 0 every second one, so it stays exact in float. Token 0 is ±max everywhere (the int16 extremes); the others random.
    /// </summary>
    private static float[] ExactnessActivations(Random random, int tokens, int cols, int superSize, int maxCode)
    {
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++)
        {
            int[] pattern = Enumerable.Range(0, superSize).Select(c => t == 0 || c == 0 ? maxCode : random.Next(-maxCode, maxCode + 1)).ToArray();
            if (t % 2 == 1) pattern[0] = -maxCode;
            for (int c = 0; c < cols; c++) x[t * cols + c] = pattern[c % superSize] * (c / superSize % 2 == 0 ? 1 : -1);
        }
        return x;
    }

    private static int RoundUp(int cols, int size) => (cols + size - 1) / size * size;

    private static void AssertBitEqual(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        for (int i = 0; i < actual.Length; i++)
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, the scalar twin's {expected[i]:R}");
    }
}
