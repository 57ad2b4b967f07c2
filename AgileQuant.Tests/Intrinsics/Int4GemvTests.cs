using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// The AVX2 one-token path (<c>Avx2Int4Gemv</c>) with both scale streams: FP32 scales, and the FP16 copy
/// <see cref="Int4RowBlocks.HalfScales"/> built when every scale is a half exactly (negative and subnormal halves included).
/// </summary>
public sealed class Int4GemvTests
{
    [Test]
    public void HalfScalesExistExactlyWhenEveryScaleIsAFiniteHalf()
    {
        PackedInt4Matrix half = Weights(rows: 9, cols: 70, groupSize: 32, asymmetric: false, halfScales: true, seed: 1);
        PackedInt4Matrix single = Weights(rows: 9, cols: 70, groupSize: 32, asymmetric: false, halfScales: false, seed: 1);
        Int4RowBlocks blocks = half.RepackToRowBlocks();
        Assert.That(blocks.HalfScales, Is.Not.Null);
        Assert.That(single.RepackToRowBlocks().HalfScales, Is.Null, "0.01 + 0.1·u is not a half");
        for (int i = 0; i < blocks.Scales!.Length; i++)
            Assert.That((float)BitConverter.UInt16BitsToHalf(blocks.HalfScales![i]), Is.EqualTo(blocks.Scales[i]), $"scale {i}");
    }

    [TestCase(1)]
    [TestCase(2)]
    public void OneTokenEqualsScalarWithHalfAndSingleScales(int threads)
    {
        foreach (int bits in new[] { 8, 4 })
        {
            IMatMulKernel kernel = Avx2Int4Kernel.IsSupported ? new Avx2Int4Kernel(bits, threads) : new ScalarInt4Kernel(bits);
            var scalar = new ScalarInt4Kernel(bits);
            foreach ((int rows, int cols) in new[] { (1, 1), (5, 31), (9, 33), (3, 172), (21, 512), (24, 4096), (17, 11008), (64, 100) })
                foreach (int groupSize in new[] { 32, 64, 128 })
                    foreach (bool asymmetric in new[] { false, true })
                        foreach (bool halfScales in new[] { true, false })
                        {
                            PackedInt4Matrix w = Weights(rows, cols, groupSize, asymmetric, halfScales, seed: rows * cols + groupSize);
                            float[] x = MatMulReference.RandomValues(cols, seed: cols);
                            var expected = new float[rows];
                            scalar.MatMul(w, x, expected, 1);
                            var output = new GuardedBuffer(rows, sentinel: -9876.5f, fill: float.NaN);
                            kernel.MatMul(w, x, output.Inner, 1);
                            string what = $"{kernel.Name} x{threads} ({rows}×{cols}, g{groupSize}, {(asymmetric ? "asymmetric" : "symmetric")}, {(halfScales ? "half" : "single")} scales)";
                            output.AssertMarginsIntact(what);
                            double[] tolerance = KernelSelfTest.QuantizedTolerance(x, 1, bits, rows, cols, w.Dequantize);
                            MatMulReference.AssertClose(output.Inner, expected, tolerance, what);
                        }
        }
    }

    /// <summary>
    /// The x86 kernels keep only the half scales when every scale is one (4 bytes per 32 weights less, issue 21) and read
    /// them in every path: the GEMM tiles' outputs from the halves equal, bit for bit, those from the float copy of the
    /// same values (a half widened to float is exact), at every token-tile width and both activation widths.
    /// </summary>
    [Test]
    public void TheTilesReadTheHalfScalesWithTheFloatScalesResultsBitForBit()
    {
        var kernels = new List<Func<int, IMatMulKernel>>();
        if (Avx2Int4Kernel.IsSupported) kernels.Add(bits => new Avx2Int4Kernel(bits, 2));
        if (AgileQuant.Intrinsics.Avx512.Avx512Int4Kernel.IsSupported) kernels.Add(bits => new AgileQuant.Intrinsics.Avx512.Avx512Int4Kernel(bits, 2));
        if (kernels.Count == 0) Assert.Ignore("no x86 W4 kernel on this CPU");
        int compared = 0;
        foreach (Func<int, IMatMulKernel> create in kernels)
            foreach (int bits in new[] { 8, 4 })
            {
                IMatMulKernel kernel = create(bits);
                foreach ((int rows, int cols) in new[] { (9, 33), (24, 512), (40, 300), (17, 1100) })
                    foreach (int groupSize in new[] { 32, 128 })
                        foreach (bool asymmetric in new[] { false, true })
                        {
                            int seed = rows * cols + groupSize;
                            PackedInt4Matrix floats = Weights(rows, cols, groupSize, asymmetric, halfScales: true, seed);
                            PackedInt4Matrix halves = Weights(rows, cols, groupSize, asymmetric, halfScales: true, seed);
                            Assert.That(floats.RepackToRowBlocks(halfScales: false).HalfScales, Is.Null, "the reference reads the floats");
                            Int4RowBlocks kept = halves.RepackToRowBlocks(keepFloatScales: false);
                            Assert.That(kept.HalfScales, Is.Not.Null, "every scale is a half");
                            Assert.That(kept.Scales, Is.Null, "only the halves are kept");
                            foreach (int tokens in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 13 })
                            {
                                float[] x = MatMulReference.RandomValues(tokens * cols, seed: cols + tokens);
                                var expected = new float[tokens * rows];
                                var actual = new float[tokens * rows];
                                kernel.MatMul(floats, x, expected, tokens);
                                kernel.MatMul(halves, x, actual, tokens);
                                Assert.That(expected, Has.All.Matches<float>(float.IsFinite));
                                Assert.That(actual, Is.EqualTo(expected), $"{kernel.Name} {rows}×{cols} g{groupSize} {(asymmetric ? "asymmetric" : "symmetric")}, {tokens} tokens");
                                compared++;
                            }
                            for (int r = 0; r < rows; r++)
                                for (int c = 0; c < cols; c += 7)
                                    Assert.That(halves.Dequantize(r, c), Is.EqualTo(floats.Dequantize(r, c)), "the scales read back from the halves");
                        }
            }
        TestContext.Out.WriteLine($"{compared} products compared");
    }

    /// <summary>Random 4-bit weights; with <paramref name="halfScales"/> every scale is a half (±, some subnormal).</summary>
    private static PackedInt4Matrix Weights(int rows, int cols, int groupSize, bool asymmetric, bool halfScales, int seed)
    {
        var random = new Random(seed);
        int groups = rows * ((cols + groupSize - 1) / groupSize);
        float[] scales = Enumerable.Range(0, groups).Select(i =>
        {
            float s = (float)(0.01 + 0.1 * random.NextDouble());
            if (!halfScales) return s;
            return i % 7 == 3 ? (float)BitConverter.UInt16BitsToHalf((ushort)(1 + random.Next(0x3FF))) // subnormal half
                : (float)(Half)(i % 5 == 2 ? -s : s);
        }).ToArray();
        if (!asymmetric)
            return PackedInt4Matrix.FromSymmetricCodes(Enumerable.Range(0, rows * cols).Select(_ => (sbyte)random.Next(-8, 8)).ToArray(), scales, rows, cols, groupSize);
        byte[] codes = Enumerable.Range(0, rows * cols).Select(_ => (byte)random.Next(0, 16)).ToArray();
        byte[] zeros = Enumerable.Range(0, groups).Select(_ => (byte)random.Next(0, 16)).ToArray();
        return PackedInt4Matrix.FromAsymmetricCodes(codes, scales, zeros, rows, cols, groupSize);
    }
}
