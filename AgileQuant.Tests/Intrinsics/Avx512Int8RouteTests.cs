using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// Both GEMM routes of <see cref="Avx512Int8Kernel"/> (sign variants: ≥ <see cref="Avx512Int8Kernel.VariantMinTokens"/> tokens and no −128 code; int16 pairs otherwise)
/// against the exact integer product: with integer activations whose largest magnitude per token is the largest code
/// (token scale 1) and weight scales 1, <c>y[t, r] = Σ_c w[r, c] · x[t, c]</c> must hold exactly (|y| &lt; 2^24).
/// </summary>
public sealed class Avx512Int8RouteTests
{
    /// <summary>
    /// (rows, cols, tokens past the variant route's threshold): ragged row tiles, chunks, K slices (8 chunks) and token
    /// tiles; the last two (9 tokens and one token short of the threshold) run the pair route. cols ≤ 1040 keeps the sums below 2^24.
    /// </summary>
    private static readonly (int Rows, int Cols, int ExtraTokens)[] Shapes =
    [
        (37, 100, 0), (64, 36, 3), (5, 300, 2), (100, 260, 1), (33, 4, 0), (40, 1, 7), (96, 1000, 8), (32, 64, 16), (8, 129, 9 - Avx512Int8Kernel.VariantMinTokens), (20, 200, -1),
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (int bits in new[] { 8, 4 })
            foreach (int threads in new[] { 1, 2 })
                foreach (bool minimumCode in new[] { false, true })
                    yield return new TestCaseData(bits, threads, minimumCode).SetArgDisplayNames($"w8a{bits} x{threads}{(minimumCode ? " with -128" : "")}");
    }

    [TestCaseSource(nameof(Cases))]
    public void GemmEqualsExactIntegerProduct(int bits, int threads, bool minimumCode)
    {
        if (!Avx512Int8Kernel.IsSupported) Assert.Ignore("AVX-512 F and BW are not enabled on this machine.");
        var kernel = new Avx512Int8Kernel(bits, threads);
        int maxCode = bits == 8 ? 127 : 7;
        foreach ((int rows, int cols, int extraTokens) in Shapes)
        {
            int tokens = Avx512Int8Kernel.VariantMinTokens + extraTokens;
            var random = new Random(rows * 1000 + cols + tokens);
            sbyte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-127, 128)).ToArray();
            if (minimumCode) codes[random.Next(codes.Length)] = sbyte.MinValue;
            float[] x = IntegerActivations(random, tokens, cols, maxCode);
            AssertExact(kernel, UnitScaleWeights(codes, rows, cols), x, tokens,
                $"w8a{bits} x{threads} ({rows}x{cols}, {tokens} tokens{(minimumCode ? ", one -128" : "")})");
        }
    }

    [Test]
    public void ExtremeCodesStayExact()
    {
        if (!Avx512Int8Kernel.IsSupported) Assert.Ignore("AVX-512 F and BW are not enabled on this machine.");
        // |w| = |x| = 127 everywhere: every vpmaddubsw pair reaches ±32258, the int16 limit's neighbourhood.
        const int rows = 40, cols = 1000;
        int tokens = Avx512Int8Kernel.VariantMinTokens + 8;
        var random = new Random(5);
        sbyte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (sbyte)(random.Next(2) == 0 ? -127 : 127)).ToArray();
        float[] x = Enumerable.Range(0, tokens * cols).Select(i => (float)(i % 3 == 0 ? 127 : -127)).ToArray();
        AssertExact(new Avx512Int8Kernel(8, 2), UnitScaleWeights(codes, rows, cols), x, tokens, "±127 codes");
        float[] sameSign = Enumerable.Repeat(127f, tokens * cols).ToArray();
        sbyte[] positive = Enumerable.Repeat((sbyte)127, rows * cols).ToArray();
        AssertExact(new Avx512Int8Kernel(8, 1), UnitScaleWeights(positive, rows, cols), sameSign, tokens, "+127 codes");
    }

    [Test]
    public void ConsecutiveCallsUseTheirOwnActivations()
    {
        if (!Avx512Int8Kernel.IsSupported) Assert.Ignore("AVX-512 F and BW are not enabled on this machine.");
        // The row chunks of one call share the split of the activations' signs; the next call (same kernel, shapes and
        // scratch) must not see the previous call's split.
        const int rows = 96, cols = 260;
        int tokens = Avx512Int8Kernel.VariantMinTokens + 5;
        var random = new Random(11);
        Int8RowMatrix w = UnitScaleWeights(Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-127, 128)).ToArray(), rows, cols);
        var kernel = new Avx512Int8Kernel(8, 2);
        for (int call = 0; call < 3; call++) AssertExact(kernel, w, IntegerActivations(random, tokens, cols, 127), tokens, $"call {call}");
    }

    // Codes (rows, cols) with every row scale 1, so the kernel's output is the integer product itself.
    private static Int8RowMatrix UnitScaleWeights(sbyte[] codes, int rows, int cols) => new(codes, Enumerable.Repeat(1f, rows).ToArray(), rows, cols);

    // Integers in [−maxCode, maxCode], each token holding ±maxCode once so that its quantization scale is exactly 1.
    private static float[] IntegerActivations(Random random, int tokens, int cols, int maxCode)
    {
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)random.Next(-maxCode, maxCode + 1)).ToArray();
        for (int t = 0; t < tokens; t++) x[t * cols + random.Next(cols)] = random.Next(2) == 0 ? -maxCode : maxCode;
        return x;
    }

    private static void AssertExact(Avx512Int8Kernel kernel, Int8RowMatrix w, float[] x, int tokens, string what)
    {
        var output = new GuardedBuffer(tokens * w.Rows, sentinel: -9876.5f, fill: float.NaN);
        kernel.MatMul(w, x, output.Inner, tokens);
        output.AssertMarginsIntact(what);
        var mismatches = new List<string>();
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < w.Rows; r++)
            {
                long expected = 0;
                for (int c = 0; c < w.Cols; c++) expected += w.Code(r, c) * (long)x[t * w.Cols + c];
                float actual = output.Inner[t * w.Rows + r];
                if (actual != expected && mismatches.Count < 5) mismatches.Add($"y[{t}, {r}] = {actual}, expected {expected}");
            }
        Assert.That(mismatches, Is.Empty, what);
    }
}
