using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.AdvSimd;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>SIMD FP32 kernels against their scalar twin, and the scalar twin against double precision.</summary>
public sealed class Fp32KernelTests
{
    private static readonly ScalarFp32Kernel Scalar = new();

    /// <summary>Every SIMD FP32 kernel of the catalog this CPU and runtime support, at 1 and 2 threads (empty under DOTNET_EnableHWIntrinsic=0).</summary>
    private static IEnumerable<TestCaseData> SimdKernels()
    {
        foreach (int threads in new[] { 1, 2 })
            foreach (IMatMulKernel kernel in CatalogKernels.Simd(CatalogKernels.Fp32, 8, threads))
                yield return new TestCaseData(kernel).SetArgDisplayNames($"{kernel.Name} x{threads}");
    }

    /// <summary>(tokens, cols, rows): odd shapes, tile remainders, and LLaMA / stories-like layer shapes.</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] Shapes =
    [
        (11, 512, 21), (7, 172, 3), (1, 1, 1), (6, 16, 16), (13, 33, 47), (128, 64, 96), (5, 288, 768),
        (1, 4096, 512), (3, 11008, 64), (17, 512, 1376), (130, 288, 100), (1, 768, 2050), (64, 257, 33),
    ];

    [Test]
    public void ScalarMatchesDoublePrecision()
    {
        foreach ((int tokens, int cols, int rows) in Shapes)
        {
            (float[] x, float[] w) = Operands(tokens, cols, rows, seed: cols);
            var y = new float[tokens * rows];
            Scalar.MatMul(new Fp32Matrix(w, rows, cols), x, y, tokens);
            (double[] exact, double[] tolerance) = MatMulReference.Evaluate(x, w, tokens, rows, cols);
            MatMulReference.AssertClose(y, exact, tolerance, $"scalar ({tokens},{cols},{rows})");
        }
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void MatchesScalarForEveryLengthUpTo256(IMatMulKernel kernel)
    {
        const int rows = 19; // one full 16-row panel and a partial one
        for (int cols = 1; cols <= 256; cols++)
            foreach (int tokens in new[] { 1, 2, 5, 6, 7, 13 })
                AssertMatchesScalar(kernel, tokens, cols, rows, seed: cols * 31 + tokens);
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void MatchesScalarForEveryRowAndTokenCount(IMatMulKernel kernel)
    {
        for (int rows = 1; rows <= 40; rows++)
            for (int tokens = 1; tokens <= 14; tokens++)
                AssertMatchesScalar(kernel, tokens, cols: 13, rows, seed: rows * 101 + tokens);
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void MatchesScalarOnOddAndModelShapes(IMatMulKernel kernel)
    {
        foreach ((int tokens, int cols, int rows) in Shapes) AssertMatchesScalar(kernel, tokens, cols, rows, seed: rows);
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void MatchesScalarOnLlamaSquareLayer(IMatMulKernel kernel)
    {
        AssertMatchesScalar(kernel, tokens: 1, cols: 4096, rows: 4096, seed: 7);
        AssertMatchesScalar(kernel, tokens: 9, cols: 4096, rows: 300, seed: 8); // depth blocks of 256 + 6-token tiles
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void MatchesScalarOnEveryTileRemainderAcrossDepthBlocks(IMatMulKernel kernel)
    {
        // Tails of 6- and 4-token tiles (some merged into two shorter tiles), 3 depth blocks (the last partial), a partial panel.
        for (int tokens = 7; tokens <= 26; tokens++) AssertMatchesScalar(kernel, tokens, cols: 600, rows: 37, seed: 400 + tokens);
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void MatchesScalarOverSeveralTokenBlocksAndPanelGroups(IMatMulKernel kernel)
    {
        AssertMatchesScalar(kernel, tokens: 128, cols: 520, rows: 1000, seed: 21); // one block, many panel groups
        AssertMatchesScalar(kernel, tokens: 401, cols: 300, rows: 70, seed: 22);   // 3 token blocks of 134, 134, 133
    }

    [TestCase(6)]
    [TestCase(4)]
    public void TokenTilesCoverEveryTokenOnceWithNoShortTile(int maxTokens)
    {
        for (int tokens = 1; tokens <= 100; tokens++)
        {
            var tiles = new TokenTiles(tokens, maxTokens);
            int next = 0;
            for (int j = 0; j < tiles.Count; j++)
            {
                (int start, int height) = tiles[j];
                Assert.That(start, Is.EqualTo(next), $"tokens {tokens}, tile {j} start");
                Assert.That(height, Is.InRange(tokens >= maxTokens ? maxTokens / 2 : 1, maxTokens), $"tokens {tokens}, tile {j} height");
                next = start + height;
            }
            Assert.That(next, Is.EqualTo(tokens), $"tokens {tokens}: tiles end");
        }
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void PropagatesNaNAndInfinityLikeScalar(IMatMulKernel kernel)
    {
        const int tokens = 8, cols = 300, rows = 37;
        (float[] x, float[] w) = Operands(tokens, cols, rows, seed: 5);
        x[2 * cols + 17] = float.NaN;
        x[5 * cols + 299] = float.PositiveInfinity;
        w[20 * cols + 3] = float.NegativeInfinity;
        var matrix = new Fp32Matrix(w, rows, cols);
        var expected = new float[tokens * rows];
        var actual = new float[tokens * rows];
        Scalar.MatMul(matrix, x, expected, tokens);
        kernel.MatMul(matrix, x, actual, tokens);
        for (int i = 0; i < expected.Length; i++)
            if (!float.IsFinite(expected[i]) || !float.IsFinite(actual[i]))
                Assert.That(actual[i], Is.EqualTo(expected[i]), $"element {i}");
        Assert.That(float.IsNaN(actual[2 * rows]), Is.True, "a NaN in x poisons its token's outputs");
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void RepeatedCallsReuseThePoolAndAgree(IMatMulKernel kernel)
    {
        const int tokens = 3, cols = 1024, rows = 1000;
        (float[] x, float[] w) = Operands(tokens, cols, rows, seed: 11);
        var matrix = new Fp32Matrix(w, rows, cols);
        var first = new float[tokens * rows];
        var again = new float[tokens * rows];
        kernel.MatMul(matrix, x, first, tokens);
        for (int call = 0; call < 200; call++)
        {
            kernel.MatMul(matrix, x, again, tokens);
            Assert.That(again, Is.EqualTo(first), $"call {call}");
        }
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void DecodeCallAllocatesNothing(IMatMulKernel kernel)
    {
        const int cols = 2048, rows = 2048;
        (float[] x, float[] w) = Operands(1, cols, rows, seed: 12);
        var matrix = new Fp32Matrix(w, rows, cols);
        var y = new float[rows];
        // Builds the panels, the pool and the scratch, and lets tiered JIT (call counting, OSR) settle.
        for (int call = 0; call < 100; call++) kernel.MatMul(matrix, x, y, 1);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int call = 0; call < 20; call++) kernel.MatMul(matrix, x, y, 1);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [TestCaseSource(nameof(SimdKernels))]
    public void ConcurrentCallersOnOneKernelGetTheirOwnResults(IMatMulKernel kernel)
    {
        const int tokens = 4, cols = 512, rows = 700;
        var matrix = new Fp32Matrix(Operands(1, cols, rows, seed: 13).W, rows, cols);
        var inputs = Enumerable.Range(0, 4).Select(i => MatMulReference.RandomValues(tokens * cols, 100 + i)).ToArray();
        var expected = inputs.Select(x => { var y = new float[tokens * rows]; kernel.MatMul(matrix, x, y, tokens); return y; }).ToArray();
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 4 }, call =>
        {
            var y = new float[tokens * rows];
            kernel.MatMul(matrix, inputs[call % 4], y, tokens);
            if (!y.AsSpan().SequenceEqual(expected[call % 4])) throw new AssertionException($"call {call} differs");
        });
        Assert.Pass("64 concurrent calls matched");
    }

    [Test]
    public void EveryKernelRejectsBadArguments()
    {
        var matrix = new Fp32Matrix(new float[6 * 5], rows: 6, cols: 5);
        foreach (IMatMulKernel kernel in SimdKernels().Select(c => (IMatMulKernel)c.Arguments[0]!).Prepend(Scalar))
        {
            Assert.Throws<ArgumentException>(() => kernel.MatMul(matrix, new float[2 * 5], new float[2 * 6 - 1], 2), $"{kernel.Name}: y too short");
            Assert.Throws<ArgumentException>(() => kernel.MatMul(matrix, new float[2 * 5 - 1], new float[2 * 6], 2), $"{kernel.Name}: x too short");
            Assert.Throws<ArgumentOutOfRangeException>(() => kernel.MatMul(matrix, new float[5], new float[6], -1), $"{kernel.Name}: negative tokens");
            Assert.Throws<ArgumentNullException>(() => kernel.MatMul(null!, new float[5], new float[6], 1), $"{kernel.Name}: null weights");
            Assert.Throws<ArgumentException>(() => kernel.MatMul(new OtherFormat(), new float[5], new float[6], 1), $"{kernel.Name}: wrong format");
            Assert.That(kernel.Supports(new OtherFormat()), Is.False, kernel.Name);
            Assert.That(kernel.Supports(matrix), Is.True, kernel.Name);
        }
    }

    [Test]
    public void ZeroTokensWritesNothing()
    {
        var matrix = new Fp32Matrix(new float[6 * 5], rows: 6, cols: 5);
        foreach (IMatMulKernel kernel in SimdKernels().Select(c => (IMatMulKernel)c.Arguments[0]!).Prepend(Scalar))
        {
            var y = new GuardedBuffer(0, sentinel: -7f, fill: 0f);
            kernel.MatMul(matrix, ReadOnlySpan<float>.Empty, y.Inner, 0);
            y.AssertMarginsIntact(kernel.Name);
        }
    }

    private static (float[] X, float[] W) Operands(int tokens, int cols, int rows, int seed) =>
        (MatMulReference.RandomValues(tokens * cols, seed), MatMulReference.RandomValues(rows * cols, seed + 1_000_003));

    private static void AssertMatchesScalar(IMatMulKernel kernel, int tokens, int cols, int rows, int seed)
    {
        (float[] x, float[] w) = Operands(tokens, cols, rows, seed);
        var matrix = new Fp32Matrix(w, rows, cols);
        var expected = new float[tokens * rows];
        Scalar.MatMul(matrix, x, expected, tokens);
        GuardedBuffer input = GuardedBuffer.Around(x);
        var output = new GuardedBuffer(tokens * rows, sentinel: -12345.5f, fill: float.NaN);
        kernel.MatMul(matrix, input.Inner, output.Inner, tokens);
        string what = $"{kernel.Name} (tokens {tokens}, cols {cols}, rows {rows})";
        output.AssertMarginsIntact(what);
        MatMulReference.AssertClose(output.Inner, expected, MatMulReference.Tolerances(x, w, tokens, rows, cols), what);
    }

    private sealed class OtherFormat : IWeightMatrix
    {
        public int Rows => 6;
        public int Cols => 5;
        public long ByteCount => 30;
    }
}
