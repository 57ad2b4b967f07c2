using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// Per-group activation scales (<see cref="ActivationScaleGranularity.PerGroup"/>) on the formats GGUF's block types load
/// into: every SIMD kernel against its scalar twin bit for bit (grouped 8-bit, super-block 4-bit and Q4_0's packed 4-bit weights), the scalar twin
/// within the per-group rounding budget of the FP32 product, the quantizer against its definition, and the option's flow
/// from <see cref="KernelOptions"/> to the kernels.
/// </summary>
public sealed class ActivationGroupScaleTests
{
    /// <summary>(tokens, cols, rows): one token (the streams), GEMM tiles, short last groups, 64+ tokens (AVX-512's sign-variant route).</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] Shapes =
        [(1, 512, 21), (7, 172, 3), (5, 33, 17), (3, 4096, 64), (1, 11008, 8), (9, 288, 40), (72, 256, 40), (65, 520, 37)];

    private static IEnumerable<TestCaseData> GroupedSimdKernels() => SimdCases(CatalogKernels.GroupedInt8);

    private static IEnumerable<TestCaseData> SuperBlockSimdKernels() => SimdCases(CatalogKernels.SuperBlockInt4);

    private static IEnumerable<TestCaseData> SimdCases(IWeightMatrix format)
    {
        foreach (int bits in new[] { 8, 4 })
            foreach (int threads in new[] { 1, 2 })
                foreach (IMatMulKernel kernel in CatalogKernels.Simd(format, bits, threads))
                    yield return new TestCaseData(kernel, bits).SetArgDisplayNames($"{kernel.Name} x{threads}");
    }

    [TestCaseSource(nameof(GroupedSimdKernels))]
    public void GroupedInt8_Simd_EqualsScalar_BitForBit_WithGroupScales(IMatMulKernel kernel, int bits)
    {
        IMatMulKernel scalar = WithGroupScales(new ScalarGroupedInt8Kernel(bits));
        WithGroupScales(kernel);
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach (GroupedInt8Layout layout in Enum.GetValues<GroupedInt8Layout>())
            {
                GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(rows + cols), rows, cols, layout, symmetricCodes: tokens % 2 == 0);
                AssertBitEqual(kernel, scalar, w, OutlierActivations(tokens, cols, seed: tokens + cols), tokens, $"{kernel.Name} {layout} ({tokens}x{cols}x{rows})");
            }
    }

    [TestCaseSource(nameof(SuperBlockSimdKernels))]
    public void SuperBlockInt4_Simd_EqualsScalar_BitForBit_WithGroupScales(IMatMulKernel kernel, int bits)
    {
        IMatMulKernel scalar = WithGroupScales(new ScalarSuperBlockInt4Kernel(bits));
        WithGroupScales(kernel);
        int seed = 0;
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach ((string name, SuperBlockInt4Scheme scheme, int maxCode, int minScale, int maxScale, int maxMin) in SuperBlockInt4SelfTest.Schemes)
            {
                int width = (cols + scheme.SuperBlockSize - 1) / scheme.SuperBlockSize * scheme.SuperBlockSize;
                SuperBlockInt4Matrix w = SuperBlockInt4SelfTest.RandomMatrix(new Random(++seed), scheme, rows, width, maxCode, minScale, maxScale, maxMin);
                AssertBitEqual(kernel, scalar, w, OutlierActivations(tokens, width, seed), tokens, $"{kernel.Name} {name} ({tokens}x{width}x{rows})");
            }
    }

    private static IEnumerable<TestCaseData> Int4SimdKernels() => SimdCases(CatalogKernels.Int4);

    /// <summary>
    /// Packed int4 weights that take activation group scales (GGUF Q4_0 as loaded): every SIMD path (one-token streams with
    /// FP16 and FP32 scale copies, GEMM tiles) equals the scalar twin bit for bit, symmetric and asymmetric codes.
    /// </summary>
    [TestCaseSource(nameof(Int4SimdKernels))]
    public void PackedInt4_Simd_EqualsScalar_BitForBit_WithGroupScales(IMatMulKernel kernel, int bits)
    {
        IMatMulKernel scalar = WithGroupScales(new ScalarInt4Kernel(bits));
        WithGroupScales(kernel);
        foreach ((int tokens, int cols, int rows) in Shapes)
            foreach (bool asymmetric in new[] { false, true })
                foreach (bool halfScales in new[] { true, false })
                {
                    PackedInt4Matrix w = Q4_0Like(rows, cols, asymmetric, halfScales, seed: rows + cols);
                    AssertBitEqual(kernel, scalar, w, OutlierActivations(tokens, cols, seed: tokens + cols), tokens,
                        $"{kernel.Name} {(asymmetric ? "asymmetric" : "symmetric")} {(halfScales ? "FP16" : "FP32")} scales ({tokens}x{cols}x{rows})");
                }
    }

    /// <summary>
    /// The matrices this library quantizes keep one scale per token under <see cref="ActivationScaleGranularity.PerGroup"/>, and a
    /// Q4_0-like matrix multiplied per token gives the per-token result bit for bit (its group scales all 1), on every kernel.
    /// </summary>
    [Test]
    public void PackedInt4_WithoutTheFlag_OrPerToken_IsThePerTokenResult()
    {
        const int tokens = 3, cols = 200, rows = 19;
        float[] x = OutlierActivations(tokens, cols, seed: 11);
        PackedInt4Matrix flagged = Q4_0Like(rows, cols, asymmetric: false, halfScales: true, seed: 2);
        PackedInt4Matrix plain = PackedInt4Matrix.FromPacked(flagged.Packed, flagged.Scales, flagged.ZeroPoints, rows, cols, 32);
        Assert.That(plain.TakesActivationGroupScales, Is.False);
        var kernels = new List<IMatMulKernel> { new ScalarInt4Kernel() };
        kernels.AddRange(CatalogKernels.Simd(CatalogKernels.Int4, 8, threads: 1));
        foreach (IMatMulKernel kernel in kernels)
        {
            var perToken = new float[tokens * rows];
            kernel.MatMul(plain, x, perToken, tokens);
            var flaggedPerToken = new float[tokens * rows];
            kernel.MatMul(flagged, x, flaggedPerToken, tokens);
            Assert.That(flaggedPerToken, Is.EqualTo(perToken), $"{kernel.Name}: per-token kernel on the flagged matrix");
            WithGroupScales(kernel);
            var plainPerGroup = new float[tokens * rows];
            kernel.MatMul(plain, x, plainPerGroup, tokens);
            Assert.That(plainPerGroup, Is.EqualTo(perToken), $"{kernel.Name}: per-group kernel on a matrix without the flag");
            var grouped = new float[tokens * rows];
            kernel.MatMul(flagged, x, grouped, tokens);
            Assert.That(grouped, Is.Not.EqualTo(perToken), $"{kernel.Name}: per-group kernel on the flagged matrix scales per group");
        }
    }

    /// <summary>Only groups of 32 take activation group scales (one kernel segment per group).</summary>
    [Test]
    public void PackedInt4_ActivationGroupScales_NeedGroupsOf32()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => PackedInt4Matrix.FromPacked(new byte[32], [1f], [], 1, 64, 64, takesActivationGroupScales: true));
        Assert.That(ex!.Message, Does.Contain("Expected a group size of 32 for per-group activation scales, found 64"));
    }

    // Q4_0 as loaded: groups of 32, codes 0..15 (implicit zero point 8, or a zero point per group), scales FP16-exact or not
    private static PackedInt4Matrix Q4_0Like(int rows, int cols, bool asymmetric, bool halfScales, int seed)
    {
        PackedInt4Matrix w = QuantizedKernelTests.Int4Weights(rows, cols, groupSize: 32, asymmetric, seed);
        float[] scales = w.Scales.ToArray();
        if (halfScales) for (int i = 0; i < scales.Length; i++) scales[i] = (float)(Half)scales[i];
        return PackedInt4Matrix.FromPacked(w.Packed, scales, w.ZeroPoints, rows, cols, 32, takesActivationGroupScales: true);
    }

    /// <summary>
    /// The scalar twin with group scales is within the rounding of per-group activations of the FP32 product:
    /// <c>|y − W·x| ≤ Σ_g (step_g / 2) · Σ_{c∈g} |W[r, c]|</c>, step_g = max_{c∈g} |x[c]| / qmax, plus float rounding; and
    /// on activations with outlier columns its error is below the per-token kernel's (the reason for the option).
    /// </summary>
    [TestCase(8)]
    [TestCase(4)]
    public void GroupedInt8_Scalar_IsWithinPerGroupRoundingOfFp32_AndCloserThanPerToken(int bits)
    {
        int maxCode = bits == 8 ? 127 : 7;
        double perGroupError = 0, perTokenError = 0;
        foreach ((int tokens, int cols, int rows) in Shapes.Where(s => s.Tokens * s.Cols * s.Rows < 1_000_000))
            foreach (GroupedInt8Layout layout in Enum.GetValues<GroupedInt8Layout>())
            {
                GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(cols), rows, cols, layout, symmetricCodes: false);
                float[] x = OutlierActivations(tokens, cols, seed: rows);
                var grouped = new float[tokens * rows];
                var perToken = new float[tokens * rows];
                WithGroupScales(new ScalarGroupedInt8Kernel(bits)).MatMul(w, x, grouped, tokens);
                new ScalarGroupedInt8Kernel(bits).MatMul(w, x, perToken, tokens);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        double exact = 0, magnitude = 0, budget = 0;
                        for (int g = 0; g < w.GroupCount; g++)
                        {
                            int begin = g * w.GroupSize, end = Math.Min(cols, begin + w.GroupSize);
                            double step = 0, weightSum = 0;
                            for (int c = begin; c < end; c++)
                            {
                                double wc = w.Dequantize(r, c), xc = x[t * cols + c];
                                exact += wc * xc;
                                magnitude += Math.Abs(wc * xc);
                                weightSum += Math.Abs(wc);
                                step = Math.Max(step, Math.Abs(xc) / maxCode);
                            }
                            budget += step / 2 * weightSum * 1.0001 + 1e-5 * step * weightSum;
                        }
                        budget += 1e-5 * magnitude + 1e-12;
                        double error = Math.Abs(grouped[t * rows + r] - exact);
                        Assert.That(error, Is.LessThanOrEqualTo(budget), $"{layout} ({tokens}x{cols}x{rows}) y[{t}, {r}]");
                        perGroupError += error;
                        perTokenError += Math.Abs(perToken[t * rows + r] - exact);
                    }
            }
        TestContext.Out.WriteLine($"A{bits}: Σ|error| per group {perGroupError:G4}, per token {perTokenError:G4}");
        Assert.That(perGroupError, Is.LessThan(perTokenError), "per-group activation scales are closer to the FP32 product than per-token ones on outlier columns");
    }

    /// <summary>Each group's codes and scale are <see cref="RowQuantizer.QuantizeSymmetric"/> of the group's values alone; the token scale is 1.</summary>
    [TestCase(16, 8)]
    [TestCase(32, 8)]
    [TestCase(256, 4)]
    public void Quantizer_WithGroupScales_QuantizesEachGroupAsARowOfItsOwn(int groupSize, int bits)
    {
        const int tokens = 3, cols = 300;
        float[] x = OutlierActivations(tokens, cols, seed: groupSize);
        var xq = new QuantizedActivations();
        xq.Quantize(x, tokens, cols, bits, groupSize, ActivationOrder.Plain, groupScales: true);
        Assert.That(xq.HasGroupScales, Is.True);
        var codes = new sbyte[groupSize];
        for (int t = 0; t < tokens; t++)
        {
            Assert.That(xq.Scales[t], Is.EqualTo(1f), $"token {t} scale");
            for (int g = 0; g < xq.GroupCount; g++)
            {
                int begin = g * groupSize, length = Math.Min(groupSize, cols - begin);
                float scale = RowQuantizer.QuantizeSymmetric(x.AsSpan(t * cols + begin, length), bits, codes);
                Assert.That(xq.GroupScales[t * xq.GroupCount + g], Is.EqualTo(scale), $"token {t} group {g} scale");
                Assert.That(xq.Codes.AsSpan(t * xq.Stride + begin, length).ToArray(), Is.EqualTo(codes.AsSpan(0, length).ToArray()), $"token {t} group {g} codes");
                Assert.That(xq.GroupSums[t * xq.GroupCount + g], Is.EqualTo(codes.AsSpan(0, length).ToArray().Sum(c => c)), $"token {t} group {g} sum");
            }
            Assert.That(xq.Codes.AsSpan(t * xq.Stride + cols, xq.Stride - cols).ToArray(), Is.All.EqualTo((sbyte)0), $"token {t} padding");
        }
    }

    /// <summary>Per token, the group scales are all 1 (so kernels multiplying by them compute the per-token result exactly).</summary>
    [Test]
    public void Quantizer_PerToken_HasUnitGroupScales()
    {
        const int tokens = 2, cols = 100;
        var xq = new QuantizedActivations();
        xq.Quantize(OutlierActivations(tokens, cols, seed: 3), tokens, cols, 8, 32, ActivationOrder.Plain);
        Assert.That(xq.HasGroupScales, Is.False);
        Assert.That(xq.GroupScales.AsSpan(0, tokens * xq.GroupCount).ToArray(), Is.All.EqualTo(1f));
    }

    /// <summary>
    /// <see cref="KernelOptions.ActivationScales"/> reaches the kernels of the set (and back through <see cref="KernelSet.Options"/>):
    /// a set created per token multiplies grouped weights as the per-token scalar twin does, one created per group as the
    /// per-group twin, up to float rounding of the SIMD paths (bit for bit; the tests above).
    /// </summary>
    [TestCase(ActivationScaleGranularity.PerToken)]
    [TestCase(ActivationScaleGranularity.PerGroup)]
    public void KernelOptions_ActivationScales_ReachTheKernels(ActivationScaleGranularity scales)
    {
        Assert.That(new KernelOptions().ActivationScales, Is.EqualTo(ActivationScaleGranularity.PerGroup), "default");
        KernelSet set = KernelSelector.Create(new KernelOptions { Threads = 1, ActivationScales = scales });
        Assert.That(set.ActivationScales, Is.EqualTo(scales));
        Assert.That(set.Options.ActivationScales, Is.EqualTo(scales));
        var scalar = new ScalarGroupedInt8Kernel();
        if (scales == ActivationScaleGranularity.PerGroup) WithGroupScales(scalar);
        const int tokens = 3, cols = 200, rows = 9;
        GroupedInt8Matrix w = KernelSelfTest.GroupedInt8Weights(new Random(5), rows, cols, GroupedInt8Layout.Q51Like, symmetricCodes: false);
        AssertBitEqual(set, scalar, w, OutlierActivations(tokens, cols, seed: 7), tokens, $"{set.Name} {scales}");
    }

    private static IMatMulKernel WithGroupScales(IMatMulKernel kernel)
    {
        KernelSet.SetActivationScales(kernel, ActivationScaleGranularity.PerGroup);
        return kernel;
    }

    // uniform values in [−1, 1) with every 37th column ×16 (outlier channels, which per-token scales spread over the whole token)
    private static float[] OutlierActivations(int tokens, int cols, int seed)
    {
        float[] x = MatMulReference.RandomValues(tokens * cols, seed);
        for (int i = 0; i < x.Length; i++) if (i % cols % 37 == 5) x[i] *= 16;
        return x;
    }

    private static void AssertBitEqual(IMatMulKernel kernel, IMatMulKernel scalar, IWeightMatrix w, float[] x, int tokens, string what)
    {
        var expected = new float[tokens * w.Rows];
        scalar.MatMul(w, x, expected, tokens);
        var output = new GuardedBuffer(tokens * w.Rows, sentinel: -9876.5f, fill: float.NaN);
        kernel.MatMul(w, GuardedBuffer.Around(x).Inner, output.Inner, tokens);
        output.AssertMarginsIntact(what);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(output.Inner[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{what}: y[{i / w.Rows}, {i % w.Rows}] = {output.Inner[i]:R}, scalar {expected[i]:R}");
    }
}
