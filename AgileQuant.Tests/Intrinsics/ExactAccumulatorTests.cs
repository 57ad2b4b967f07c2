using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// The packed 4-bit and per-row 8-bit kernels (every SIMD path of the catalog, and the scalar twins) against the exact
/// integer product, with no float tolerance: on data where every float step any summation order can take is exact, each
/// output must equal <c>s_x · Σ_g s_g · Σ_{c∈g} (q[c] − z_g) · x_q[c]</c> bit for bit (per-row 8-bit: its specification
/// <c>s_x · (s_w · (float)Σ q·x)</c> from the exact sum). Rows of 11008 columns (and 11003 or 10992, short last groups), the GEMV (one token), GEMM-tile and ≥ 64-token paths, codes and activations at the int16 / int32
/// limits (every nibble 15 or 0 under ±127, so the AVX2 segment sums reach 4 × 7620; −128 under ±127, so the
/// <c>vpmaddubsw</c> pairs reach ±32512), zero points 0 and 15, and group scales that are normal halves, subnormal halves
/// (the AVX-512 and AVX2 one-token paths then read <see cref="Int4RowBlocks.HalfScales"/>) or floats no half holds.
/// </summary>
/// <remarks>
/// Why exact: activations are integers whose largest magnitude per token is the largest code, so the token scale is 1
/// and the codes are the values; scales are small odd multiples of powers of two. Integer sums inside a group are exact
/// int32 in every kernel; the float steps add multiples of the group sums, over groups of ≥ 16 columns. The test checks,
/// per output, that the 16-column block terms <c>s_g · Σ q·x</c> and <c>s_g · z_g · Σ x</c> share a power-of-two grid 2^e
/// with Σ |term| &lt; 2^24 · 2^e: then every partial sum in any order (with or without FMA) is a float exactly, and an
/// output that differs from the exact value by even one integer unit of one column fails.
/// </remarks>
public sealed class ExactAccumulatorTests
{
    /// <summary>How the weights and activations of one case are drawn.</summary>
    public enum Pattern
    {
        /// <summary>Random codes (−128..127 / 0..15, zero points 0..15 with 0 and 15 planted), small activations with ±qmax planted.</summary>
        Random,

        /// <summary>Every code at its maximum (127, nibble 15), every activation +qmax.</summary>
        MaxCodesPositiveX,

        /// <summary>Every code at its maximum, every activation −qmax.</summary>
        MaxCodesNegativeX,

        /// <summary>Every code at its minimum (−128, nibble 0), every activation +qmax.</summary>
        MinCodesPositiveX,

        /// <summary>Every code at its minimum, activations alternating ±qmax (pairs of products of both signs).</summary>
        MinCodesAlternatingX,
    }

    /// <summary>Which group scales a case uses.</summary>
    public enum ScaleKind
    {
        /// <summary>±{1, 3} · 2^−{6, 7}: normal halves.</summary>
        NormalHalves,

        /// <summary>±{1, 3, 5} · 2^−24: subnormal halves.</summary>
        SubnormalHalves,

        /// <summary>±{1, 3} · 2^−{30, 31}: floats below the half range (the float scale stream).</summary>
        Singles,
    }

    private const int Rows = 19; // one 16-row block pair and a partial block

    // Random data: 11003 columns (a last group of 27, a last 16-column block of 11); at the extremes 10992 (a last group of
    // 16 of 32, or 112 of 128) keeps every group sum a multiple of 16 · 1905 so the exact result is a float.
    private static int[] Columns(Pattern pattern) => pattern == Pattern.Random ? [11008, 11003] : [11008, 10992];

    private static IEnumerable<TestCaseData> Kernels(IWeightMatrix format, Func<int, IMatMulKernel> scalar)
    {
        foreach (int bits in new[] { 8, 4 })
        {
            yield return new TestCaseData(scalar(bits), bits).SetArgDisplayNames($"{scalar(bits).Name}");
            foreach (IMatMulKernel kernel in CatalogKernels.Simd(format, bits, threads: 2))
                yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x2");
        }
    }

    private static IEnumerable<TestCaseData> Int4Kernels() => Kernels(CatalogKernels.Int4, bits => new ScalarInt4Kernel(bits));

    private static IEnumerable<TestCaseData> Int8Kernels() => Kernels(CatalogKernels.Int8, bits => new ScalarInt8Kernel(bits));

    /// <summary>Packed 4-bit weights, symmetric (zero point 8) and asymmetric, groups of 32 and 128, every pattern and scale kind.</summary>
    [TestCaseSource(nameof(Int4Kernels))]
    public void Int4OutputsAreTheExactIntegerProduct(IMatMulKernel kernel, int bits)
    {
        foreach (Pattern pattern in Enum.GetValues<Pattern>())
            foreach (ScaleKind scales in Enum.GetValues<ScaleKind>())
                foreach (bool asymmetric in new[] { false, true })
                    foreach (int cols in Columns(pattern))
                    {
                        int groupSize = cols == 11008 ? 128 : 32;
                        foreach (int tokens in TokenCounts(pattern, scales))
                        {
                            var random = new Random(HashCode.Combine(pattern, scales, asymmetric, cols, tokens));
                            PackedInt4Matrix w = Int4Weights(random, pattern, scales, asymmetric, cols, groupSize);
                            float[] x = Activations(random, pattern, tokens, cols, bits);
                            int[] codes = new int[Rows * cols], zeros = new int[Rows * w.GroupCount];
                            float[] groupScales = new float[Rows * w.GroupCount];
                            for (int r = 0; r < Rows; r++)
                            {
                                for (int c = 0; c < cols; c++) codes[r * cols + c] = w.Nibble(r, c);
                                for (int g = 0; g < w.GroupCount; g++)
                                    (zeros[r * w.GroupCount + g], groupScales[r * w.GroupCount + g]) = (w.ZeroPoint(r, g), w.Scale(r, g));
                            }
                            string what = $"{kernel.Name} {(asymmetric ? "asymmetric" : "symmetric")} g{groupSize} {pattern} {scales} ({Rows}x{cols}, {tokens} tokens)";
                            AssertExact(kernel, w, x, tokens, codes, zeros, groupScales, groupSize, what);
                        }
                    }
    }

    /// <summary>Per-row 8-bit weights (codes −128..127, one scale per row), every pattern and scale kind.</summary>
    [TestCaseSource(nameof(Int8Kernels))]
    public void Int8OutputsAreTheExactIntegerProduct(IMatMulKernel kernel, int bits)
    {
        foreach (Pattern pattern in Enum.GetValues<Pattern>())
            foreach (ScaleKind scales in Enum.GetValues<ScaleKind>())
                foreach (int cols in Columns(pattern))
                    foreach (int tokens in TokenCounts(pattern, scales))
                        foreach (bool symmetric in tokens >= Avx512Int8Kernel.VariantMinTokens ? new[] { true, false } : [false])
                        {
                            var random = new Random(HashCode.Combine(pattern, scales, cols, tokens, symmetric));
                            int low = symmetric ? -127 : -128;
                            var codes = new int[Rows * cols];
                            for (int i = 0; i < codes.Length; i++)
                                codes[i] = pattern switch
                                {
                                    Pattern.Random => i % 97 == 0 ? low : random.Next(low, 128),
                                    Pattern.MaxCodesPositiveX or Pattern.MaxCodesNegativeX => 127,
                                    _ => low,
                                };
                            float[] rowScales = Enumerable.Range(0, Rows).Select(_ => Scale(random, scales)).ToArray();
                            var w = new Int8RowMatrix(codes.Select(c => (sbyte)c).ToArray(), rowScales, Rows, cols);
                            float[] x = Activations(random, pattern, tokens, cols, bits);
                            string what = $"{kernel.Name} {pattern} {scales}{(symmetric ? " −127..127" : "")} ({Rows}x{cols}, {tokens} tokens)";
                            AssertExactRows(kernel, w, x, tokens, codes, rowScales, what);
                        }
    }

    // One token (GEMV) and a GEMM tile for every case; ≥ 64 tokens (the AVX-512 sign-variant route) for the random and
    // one extreme pattern with normal halves, to keep the run short.
    private static int[] TokenCounts(Pattern pattern, ScaleKind scales) =>
        scales == ScaleKind.NormalHalves && pattern is Pattern.Random or Pattern.MinCodesAlternatingX
            ? [1, 5, Avx512Int8Kernel.VariantMinTokens + 3]
            : [1, 5];

    private static float Scale(Random random, ScaleKind kind)
    {
        double magnitude = kind switch
        {
            ScaleKind.NormalHalves => (random.Next(2) == 0 ? 1 : 3) * Math.Pow(2, -6 - random.Next(2)),
            ScaleKind.SubnormalHalves => (1 + 2 * random.Next(3)) * Math.Pow(2, -24),
            _ => (random.Next(2) == 0 ? 1 : 3) * Math.Pow(2, -30 - random.Next(2)),
        };
        return (float)(random.Next(4) == 0 ? -magnitude : magnitude);
    }

    private static PackedInt4Matrix Int4Weights(Random random, Pattern pattern, ScaleKind kind, bool asymmetric, int cols, int groupSize)
    {
        int groups = (cols + groupSize - 1) / groupSize;
        float[] scales = Enumerable.Range(0, Rows * groups).Select(_ => Scale(random, kind)).ToArray();
        var nibbles = new byte[Rows * cols];
        for (int i = 0; i < nibbles.Length; i++)
            nibbles[i] = pattern switch
            {
                Pattern.Random => (byte)(i % 89 == 0 ? 15 : i % 89 == 1 ? 0 : random.Next(16)),
                Pattern.MaxCodesPositiveX or Pattern.MaxCodesNegativeX => 15,
                _ => 0,
            };
        if (!asymmetric)
            return PackedInt4Matrix.FromSymmetricCodes(nibbles.Select(n => (sbyte)(n - PackedInt4Matrix.SymmetricZeroPoint)).ToArray(), scales, Rows, cols, groupSize);
        // Zero points 0 and 15 on alternate rows at the extremes (code 15 − 0 and 0 − 15 are the largest weights), all of 0..15 at random.
        var zeros = new byte[Rows * groups];
        for (int i = 0; i < zeros.Length; i++)
            zeros[i] = pattern == Pattern.Random ? (byte)(i % 7 == 0 ? 0 : i % 7 == 1 ? 15 : random.Next(16))
                : (byte)((i / groups) % 2 == 0 ? (pattern is Pattern.MaxCodesPositiveX or Pattern.MaxCodesNegativeX ? 0 : 15) : (pattern is Pattern.MaxCodesPositiveX or Pattern.MaxCodesNegativeX ? 15 : 0));
        return PackedInt4Matrix.FromAsymmetricCodes(nibbles, scales, zeros, Rows, cols, groupSize);
    }

    /// <summary>Integer activations with |x| ≤ qmax and each token holding ±qmax (token scale exactly 1).</summary>
    private static float[] Activations(Random random, Pattern pattern, int tokens, int cols, int bits)
    {
        int maxCode = bits == 8 ? 127 : 7;
        int spread = Math.Min(maxCode, 9);
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++)
        {
            for (int c = 0; c < cols; c++)
                x[t * cols + c] = pattern switch
                {
                    Pattern.Random => random.Next(-spread, spread + 1),
                    Pattern.MaxCodesNegativeX => -maxCode,
                    Pattern.MinCodesAlternatingX => c % 2 == 0 ? maxCode : -maxCode,
                    _ => maxCode,
                };
            if (pattern == Pattern.Random)
            {
                x[t * cols + random.Next(cols)] = maxCode;
                x[t * cols + random.Next(cols)] = -maxCode;
            }
        }
        return x;
    }

    /// <summary>
    /// Runs <paramref name="kernel"/> and asserts every output equals the exact product (codes q, zero points z, group scales
    /// s, the activations as they are: integers whose token scale is 1), after checking the data keeps every float step exact.
    /// </summary>
    private static void AssertExact(IMatMulKernel kernel, IWeightMatrix w, float[] x, int tokens, int[] codes, int[] zeros, float[] scales, int groupSize, string what)
    {
        int rows = w.Rows, cols = w.Cols, groups = (cols + groupSize - 1) / groupSize;
        var output = new GuardedBuffer(tokens * rows, sentinel: -9876.5f, fill: float.NaN);
        kernel.MatMul(w, GuardedBuffer.Around(x).Inner, output.Inner, tokens);
        output.AssertMarginsIntact(what);
        var terms = new List<double>();
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                terms.Clear();
                double exact = 0;
                for (int g = 0; g < groups; g++)
                {
                    double scale = scales[r * groups + g];
                    int zero = zeros[r * groups + g];
                    int end = Math.Min(cols, (g + 1) * groupSize);
                    for (int block = g * groupSize; block < end; block += 16)
                    {
                        long products = 0, activations = 0;
                        for (int c = block; c < Math.Min(end, block + 16); c++)
                        {
                            products += (long)codes[r * cols + c] * (long)x[t * cols + c];
                            activations += (long)x[t * cols + c];
                        }
                        terms.Add(scale * products);
                        terms.Add(scale * zero * activations);
                        exact += scale * (products - zero * activations);
                    }
                }
                AssertFloatExact(terms, what);
                float expected = (float)exact;
                Assert.That(expected, Is.EqualTo(exact), $"{what}: the exact product must be a float");
                float actual = output.Inner[t * rows + r];
                if (actual != expected) Assert.Fail($"{what}: y[{t}, {r}] = {actual:R}, exact {expected:R} (difference {actual - exact:G6})");
            }
    }

    /// <summary>
    /// Runs the per-row 8-bit <paramref name="kernel"/> and asserts every output is its specification computed here from the
    /// exact integer sum: <c>s_x · (s_w · (float)Σ_c q·x)</c> (one conversion of an exact int32, the activations' token scale
    /// 1), so an accumulator off by one unit fails wherever the sum is a float (all-maximal rows of 11008 columns included).
    /// </summary>
    private static void AssertExactRows(IMatMulKernel kernel, Int8RowMatrix w, float[] x, int tokens, int[] codes, float[] rowScales, string what)
    {
        int rows = w.Rows, cols = w.Cols;
        var output = new GuardedBuffer(tokens * rows, sentinel: -9876.5f, fill: float.NaN);
        kernel.MatMul(w, GuardedBuffer.Around(x).Inner, output.Inner, tokens);
        output.AssertMarginsIntact(what);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                long sum = 0;
                for (int c = 0; c < cols; c++) sum += (long)codes[r * cols + c] * (long)x[t * cols + c];
                Assert.That(Math.Abs(sum), Is.LessThan(1L << 31), $"{what}: the test's data must keep the row sum an int32");
                float expected = 1f * (rowScales[r] * (float)sum);
                float actual = output.Inner[t * rows + r];
                if (actual != expected) Assert.Fail($"{what}: y[{t}, {r}] = {actual:R}, expected {expected:R} from the exact sum {sum}");
            }
    }

    /// <summary>
    /// Fails unless the terms lie on one power-of-two grid 2^e with Σ |term| &lt; 2^24 · 2^e: every sum of any of them, in any
    /// order, is then a float exactly (the test's own precondition).
    /// </summary>
    private static void AssertFloatExact(List<double> terms, string what)
    {
        int lowest = int.MaxValue;
        double magnitude = 0;
        foreach (double term in terms)
        {
            if (term == 0) continue;
            long bits = BitConverter.DoubleToInt64Bits(term);
            int exponent = (int)((bits >> 52) & 0x7FF);
            long mantissa = (bits & 0xFFFFFFFFFFFFFL) | (exponent == 0 ? 0 : 1L << 52);
            lowest = Math.Min(lowest, exponent - 1075 + System.Numerics.BitOperations.TrailingZeroCount(mantissa));
            magnitude += Math.Abs(term);
        }
        if (lowest != int.MaxValue && magnitude >= Math.ScaleB(1 << 24, lowest))
            Assert.Fail($"{what}: the test's data must keep every partial sum exact in float (Σ|term| = {magnitude:G6}, grid 2^{lowest})");
    }
}
