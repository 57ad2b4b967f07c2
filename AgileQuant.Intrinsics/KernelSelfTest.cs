using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Scalar;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Intrinsics;

/// <summary>One kernel on one shape in <see cref="KernelSelfTest.Run"/>.</summary>
/// <param name="Kernel">Kernel name, e.g. <c>w4a8-avx2</c>.</param>
/// <param name="Shape">What was multiplied, e.g. <c>tokens 7, cols 172, rows 3, g32 asym</c>.</param>
/// <param name="Passed">Whether the kernel matched its scalar twin.</param>
/// <param name="MaxError">Largest |SIMD − scalar| over the outputs (integer kernels must reach 0).</param>
/// <param name="Tolerance">Allowed error for the output with the largest error: 1e-6·√Cols·Σ_c|x·w| (FP32) or
/// 1e-6·√Cols·s_x·Σ_c|x_q·W| with W dequantized (integer kernels, whose int32 group sums are exact).</param>
public sealed record KernelSelfTestResult(string Kernel, string Shape, bool Passed, double MaxError, double Tolerance);

/// <summary>
/// Runs every SIMD path of the <see cref="KernelCatalog"/> that this CPU and runtime support against its scalar twin
/// on seeded data (odd shapes, short last groups, 1..13 and 72 tokens), e.g. for <c>agilequant selftest</c> under
/// qemu-aarch64. Outputs must agree within <c>1e-6 · √Cols · Σ_c |x[t, c] · W[r, c]|</c> (for integer kernels:
/// quantized x, dequantized W), i.e. up to float rounding. Entries add paths the CPU would not pick itself (on ARM
/// with SDOT, the SMLAL / packed 4-bit multiplier paths of cores without it).
/// </summary>
public static class KernelSelfTest
{
    /// <summary>(tokens, cols, rows) tested for every kernel.</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] Shapes =
        [(1, 172, 37), (7, 172, 3), (11, 512, 21), (13, 256, 40), (2, 4096, 17), (6, 33, 16), (1, 1, 1), (72, 100, 37), (4, 224, 24)];

    // From this many tokens the W8 weights are drawn from the quantizers' symmetric range −127..127 (no −128), so the
    // AVX-512 kernel's sign-variant GEMM route (≥ 64 tokens, no −128 code) runs; the shorter shapes keep −128 in range.
    private const int SymmetricInt8FromTokens = 64;

    /// <summary>Runs the self-test with <paramref name="threads"/> threads per kernel (at most <see cref="KernelSelector.MaxThreads"/>) and data from <paramref name="seed"/>.</summary>
    public static IReadOnlyList<KernelSelfTestResult> Run(int threads = 2, int seed = 1234)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        threads = Math.Min(threads, KernelSelector.MaxThreads);
        var results = new List<KernelSelfTestResult>();
        foreach ((IMatMulKernel kernel, int bits) in SimdKernels(threads))
        {
            IMatMulKernel twin = ScalarTwin(kernel, bits);
            foreach ((int tokens, int cols, int rows) in Shapes)
            {
                var random = new Random(HashCode.Combine(seed, tokens, cols, rows));
                float[] x = Values(random, tokens * cols);
                string shape = $"tokens {tokens}, cols {cols}, rows {rows}";
                switch (twin)
                {
                    case ScalarFp32Kernel:
                        float[] w = Values(random, rows * cols);
                        results.Add(Compare(kernel, twin, new Fp32Matrix(w, rows, cols), x, tokens, shape, FloatTolerance(x, w, tokens, rows, cols)));
                        break;
                    case ScalarInt8Kernel:
                        Int8RowMatrix w8 = Int8Weights(random, rows, cols, smallestCode: tokens >= SymmetricInt8FromTokens ? -127 : -128);
                        results.Add(Compare(kernel, twin, w8, x, tokens, shape, QuantizedTolerance(x, tokens, bits, rows, cols, (r, c) => w8.Scales[r] * w8.Code(r, c))));
                        break;
                    case ScalarInt4Kernel:
                        // the last: scales that are halves exactly (GGUF Q4_0's), which the x86 kernels keep and read alone
                        foreach ((int groupSize, bool asymmetric, bool halfScales) in new[] { (32, false, false), (128, true, false), (64, true, false), (32, false, true) })
                        {
                            PackedInt4Matrix w4 = Int4Weights(random, rows, cols, groupSize, asymmetric);
                            if (halfScales) w4 = WithHalfScales(w4);
                            results.Add(Compare(kernel, twin, w4, x, tokens, $"{shape}, g{groupSize} {(asymmetric ? "asym" : "sym")}{(halfScales ? " fp16" : "")}",
                                QuantizedTolerance(x, tokens, bits, rows, cols, w4.Dequantize)));
                        }
                        break;
                    case ScalarSuperBlockInt4Kernel:
                        results.AddRange(SuperBlockInt4SelfTest.Run(kernel, twin, random, tokens, cols, rows, shape));
                        break;
                    case ScalarGroupedInt8Kernel:
                        foreach (GroupedInt8Layout layout in Enum.GetValues<GroupedInt8Layout>())
                        {
                            GroupedInt8Matrix wg = GroupedInt8Weights(random, rows, cols, layout, symmetricCodes: tokens >= SymmetricInt8FromTokens);
                            results.Add(Compare(kernel, twin, wg, x, tokens, $"{shape}, {layout}", QuantizedTolerance(x, tokens, bits, rows, cols, wg.Dequantize)));
                        }
                        break;
                    default:
                        throw new NotSupportedException($"The self-test has no data for the weight format of {twin.Name} (kernel {kernel.Name}).");
                }
            }
            if (kernel is ITripKernel trip && twin is ITripKernel twinTrip) results.AddRange(TripResults(kernel, trip, twinTrip, seed));
        }
        results.AddRange(GroupScaleResults(threads, seed));
        results.AddRange(Int4GroupScaleResults(threads, seed));
        results.AddRange(ExactResults(threads, seed));
        results.AddRange(HadamardResults(seed));
        return results;
    }

    /// <summary>Widths of the Hadamard check: powers of two from one register up, and m·2^k for known orders m (172·64 = LLaMA's 11008).</summary>
    private static readonly int[] HadamardWidths = [4, 8, 16, 64, 4096, 12, 96, 40, 172, 688, 156, 11008];

    /// <summary>
    /// The vectorized normalized Hadamard transform (<see cref="Rotation.HadamardTransform"/>, QuaRot's online rotation)
    /// against its scalar twin on seeded data; both perform the same additions per element, so they must agree exactly.
    /// Named <c>hadamard-vector256</c> or <c>hadamard-vector128</c>; absent where no vector width is accelerated.
    /// </summary>
    private static IEnumerable<KernelSelfTestResult> HadamardResults(int seed)
    {
        if (Rotation.HadamardTransform.Path == "scalar") yield break;
        foreach (int n in HadamardWidths)
        {
            float[] expected = Values(new Random(HashCode.Combine(seed, n, nameof(Rotation.HadamardTransform))), n);
            float[] actual = expected.ToArray();
            Rotation.HadamardTransform.TransformScalar(expected);
            Rotation.HadamardTransform.Transform(actual);
            double maxError = 0;
            for (int i = 0; i < n; i++) maxError = Math.Max(maxError, Math.Abs((double)actual[i] - expected[i]));
            bool passed = actual.AsSpan().SequenceEqual(expected);
            yield return new KernelSelfTestResult("hadamard-" + Rotation.HadamardTransform.Path, $"n {n}", passed, maxError, 0);
        }
    }

    /// <summary>(rows of X, cols, weight rows) of the TRIP (static-scale) check: one token, a tile, a pruned 70-row gather.</summary>
    private static readonly (int Tokens, int Cols, int Rows)[] TripShapes = [(1, 4096, 17), (7, 172, 21), (70, 256, 33)];

    /// <summary>
    /// The TRIP pass (<see cref="ITripKernel"/>, static activation scales) of <paramref name="trip"/> against its scalar
    /// twin's, for each integer format the kernel multiplies, every fourth row of X pruned and every third 4-bit; named
    /// <c>kernel trip</c>. Tolerance as for <see cref="QuantizedTolerance"/> with the static codes.
    /// </summary>
    private static IEnumerable<KernelSelfTestResult> TripResults(IMatMulKernel kernel, ITripKernel trip, ITripKernel twin, int seed)
    {
        var scales = new StaticActivationScales(1f / 127, 1f / 7);
        foreach ((int tokens, int cols, int rows) in TripShapes)
        {
            var random = new Random(HashCode.Combine(seed, tokens, cols, rows, 7));
            IWeightMatrix[] matrices = [Int8Weights(random, rows, cols, smallestCode: -128), Int4Weights(random, rows, cols, 32, asymmetric: false), Int4Weights(random, rows, cols, 128, asymmetric: true)];
            foreach (IWeightMatrix w in matrices.Where(m => kernel.Supports(m) && trip.SupportsTrip(m) && twin.SupportsTrip(m)))
            {
                float[] x = Values(random, tokens * cols); // (tokens, cols)
                int[] gathered = Enumerable.Range(0, tokens).Where(k => k % 4 != 3).ToArray();
                bool[] lowBit = Enumerable.Range(0, tokens).Select(k => k % 3 == 1).ToArray();
                var expected = new float[tokens * w.Rows]; // (tokens, rows); rows of X not gathered stay 0
                var actual = new float[tokens * w.Rows + 1];
                actual[^1] = 12345.5f;
                twin.MatMulTrip(w, x, gathered, lowBit, scales, expected);
                trip.MatMulTrip(w, x, gathered, lowBit, scales, actual.AsSpan(0, expected.Length));
                Func<int, int, float> weight = w is Int8RowMatrix w8 ? (r, c) => w8.Scales[r] * w8.Code(r, c) : ((PackedInt4Matrix)w).Dequantize;
                double maxError = 0, allowed = 0;
                bool passed = actual[^1] == 12345.5f;
                foreach (int k in gathered)
                {
                    float scale = lowBit[k] ? scales.FourBit : scales.EightBit;
                    int maxCode = lowBit[k] ? 7 : 127;
                    for (int r = 0; r < w.Rows; r++)
                    {
                        double magnitude = 0;
                        for (int c = 0; c < cols; c++) magnitude += Math.Abs(TripMatMul.QuantizeStatic(x[k * cols + c], 1 / scale, maxCode) * (double)weight(r, c));
                        double limit = 1e-6 * Math.Sqrt(cols) * scale * magnitude, error = Math.Abs((double)actual[k * w.Rows + r] - expected[k * w.Rows + r]);
                        passed &= error <= limit;
                        if (!(error <= maxError)) (maxError, allowed) = (error, limit);
                    }
                }
                yield return new KernelSelfTestResult(kernel.Name + " trip", $"tokens {tokens} ({gathered.Length} gathered), cols {cols}, rows {rows}, {w.GetType().Name}", passed, maxError, allowed);
            }
        }
    }

    /// <summary>
    /// What this CPU offers that <paramref name="results"/> (of <see cref="Run"/>) did not run, one line each; empty when
    /// everything ran. Read from the CPU and the selected kernels, not from the self-test's own list: no SIMD kernel at all;
    /// a kernel of a supported catalog entry (<see cref="KernelCatalogEntry.CreateKernels"/>, both activation widths) that
    /// did not run, or whose TRIP (static-scale) path did not; on ARM with SDOT, an integer format with no path that does
    /// without it (the cores without SDOT).
    /// </summary>
    public static IReadOnlyList<string> MissingPaths(IReadOnlyList<KernelSelfTestResult> results)
    {
        var ran = results.Select(r => r.Kernel).ToHashSet();
        var missing = new List<string>();
        if (ran.Count == 0) missing.Add("no SIMD kernel was selected: this CPU or runtime enables none of the catalog's instruction sets");
        if (Rotation.HadamardTransform.Path != "scalar" && !ran.Contains("hadamard-" + Rotation.HadamardTransform.Path))
            missing.Add($"hadamard-{Rotation.HadamardTransform.Path} (the vectorized Hadamard transform)");
        foreach (KernelCatalogEntry entry in KernelCatalog.Entries.Where(e => e != KernelCatalog.Scalar && e.IsSupported))
            foreach (int bits in new[] { 8, 4 })
                foreach (IMatMulKernel kernel in entry.CreateKernels(bits, threads: 1))
                {
                    if (!ran.Contains(kernel.Name)) missing.Add($"{kernel.Name} ({entry.Name})");
                    else if (kernel is ITripKernel trip && FormatProbes.Any(p => kernel.Supports(p) && trip.SupportsTrip(p)) && !ran.Contains(kernel.Name + " trip"))
                        missing.Add($"{kernel.Name} trip ({entry.Name}, static scales)");
                    if (ExactProbes.Any(kernel.Supports) && ran.Contains(kernel.Name) && !ran.Contains(kernel.Name + " exact"))
                        missing.Add($"{kernel.Name} exact ({entry.Name}, the exact-integer check at long rows)");
                    int dot = kernel.Name.IndexOf("-sdot", StringComparison.Ordinal);
                    if (dot > 0 && !ran.Any(r => r.StartsWith(kernel.Name[..(dot + 1)], StringComparison.Ordinal) && !r.Contains("-sdot", StringComparison.Ordinal)))
                        missing.Add($"{kernel.Name[..dot]} without SDOT ({entry.Name}: the path of cores without the dot product)");
                }
        return missing;
    }

    /// <summary>
    /// The packed int4 kernels with per-group activation scales, kernel and scalar twin both set to
    /// <see cref="ActivationScaleGranularity.PerGroup"/>, on Q4_0-like matrices (<see cref="PackedInt4Matrix.TakesActivationGroupScales"/>,
    /// groups of 32; FP16-exact scales with the implicit zero point 8, FP32 scales with zero points), outlier columns as above.
    /// </summary>
    private static IEnumerable<KernelSelfTestResult> Int4GroupScaleResults(int threads, int seed)
    {
        foreach ((IMatMulKernel kernel, int bits) in SimdKernels(threads))
        {
            IMatMulKernel twin = ScalarTwin(kernel, bits);
            if (twin is not ScalarInt4Kernel) continue;
            KernelSet.SetActivationScales(kernel, ActivationScaleGranularity.PerGroup);
            KernelSet.SetActivationScales(twin, ActivationScaleGranularity.PerGroup);
            foreach ((int tokens, int cols, int rows) in Shapes)
            {
                var random = new Random(HashCode.Combine(seed, tokens, cols, rows, nameof(PackedInt4Matrix.TakesActivationGroupScales)));
                float[] x = Values(random, tokens * cols);
                for (int i = 0; i < x.Length; i++) if (i % cols % 37 == 5) x[i] *= 16;
                foreach (bool asymmetric in new[] { false, true })
                {
                    PackedInt4Matrix source = Int4Weights(random, rows, cols, PackedInt4Matrix.ActivationGroupColumns, asymmetric);
                    float[] scales = source.Scales.ToArray();
                    if (!asymmetric) for (int i = 0; i < scales.Length; i++) scales[i] = (float)(Half)scales[i];
                    PackedInt4Matrix w4 = PackedInt4Matrix.FromPacked(source.Packed, scales, source.ZeroPoints, rows, cols, source.GroupSize, takesActivationGroupScales: true);
                    yield return Compare(kernel, twin, w4, x, tokens, $"tokens {tokens}, cols {cols}, rows {rows}, group scales, g32 {(asymmetric ? "asym" : "sym fp16")}",
                        QuantizedTolerance(x, tokens, bits, rows, cols, w4.Dequantize));
                }
            }
        }
    }

    /// <summary>
    /// The kernels that take per-group activation scales (grouped 8-bit and super-block 4-bit weights) again, kernel and scalar
    /// twin both set to <see cref="ActivationScaleGranularity.PerGroup"/>, on the same shapes with outlier columns (×16 every
    /// 37th column), so that the groups' scales differ.
    /// </summary>
    private static IEnumerable<KernelSelfTestResult> GroupScaleResults(int threads, int seed)
    {
        foreach ((IMatMulKernel kernel, int bits) in SimdKernels(threads))
        {
            IMatMulKernel twin = ScalarTwin(kernel, bits);
            if (twin is not (ScalarGroupedInt8Kernel or ScalarSuperBlockInt4Kernel)) continue;
            KernelSet.SetActivationScales(kernel, ActivationScaleGranularity.PerGroup);
            KernelSet.SetActivationScales(twin, ActivationScaleGranularity.PerGroup);
            foreach ((int tokens, int cols, int rows) in Shapes)
            {
                var random = new Random(HashCode.Combine(seed, tokens, cols, rows, nameof(ActivationScaleGranularity.PerGroup)));
                float[] x = Values(random, tokens * cols);
                for (int i = 0; i < x.Length; i++) if (i % cols % 37 == 5) x[i] *= 16;
                string shape = $"tokens {tokens}, cols {cols}, rows {rows}, group scales";
                if (twin is ScalarSuperBlockInt4Kernel)
                {
                    foreach (KernelSelfTestResult result in SuperBlockInt4SelfTest.Run(kernel, twin, random, tokens, cols, rows, shape)) yield return result;
                    continue;
                }
                foreach (GroupedInt8Layout layout in Enum.GetValues<GroupedInt8Layout>())
                {
                    GroupedInt8Matrix wg = GroupedInt8Weights(random, rows, cols, layout, symmetricCodes: tokens >= SymmetricInt8FromTokens);
                    yield return Compare(kernel, twin, wg, x, tokens, $"{shape}, {layout}", QuantizedTolerance(x, tokens, bits, rows, cols, wg.Dequantize));
                }
            }
        }
    }

    /// <summary>
    /// (tokens, cols) of the exact check: one token (the GEMV paths) and GEMM tiles; 11003 leaves a short last group, 10976 a number
    /// of 32-column groups (343) that leaves the ARM SDOT group tile a single group after its steps of 2.
    /// </summary>
    private static readonly (int Tokens, int Cols)[] ExactShapes = [(1, 11008), (5, 11003), (3, 10976)];

    /// <summary>Rows of the exact check: one 16-row block pair and a partial block.</summary>
    private const int ExactRows = 19;

    // The formats the exact check covers (a kernel of one of them must run it: MissingPaths).
    private static IWeightMatrix[] ExactProbes => [FormatProbes[1], FormatProbes[2], FormatProbes[4]];

    /// <summary>
    /// Packed 4-bit (symmetric and asymmetric, zero points 0..15), per-row 8-bit and grouped 8-bit (GGUF Q8_0-like) kernels
    /// against their scalar twins with no tolerance at all, on rows of 11008 / 11003 columns (4096 / 4091 for the 8-bit
    /// codes), named <c>kernel exact</c>. The data make every float step exact in any summation order (the argument of the
    /// x86 ExactAccumulatorTests, so a SIMD path off by one integer unit of one column fails, however long the row):
    /// activations are integers, |x| ≤ 4 with +qmax and −qmax planted in every 32 columns, so the token's and every
    /// group's activation scale is exactly 1 and the codes are the values; weight scales are ±{1, 3}·2^−7 (±2^−7 for the
    /// 8-bit codes), exact in half precision; so each group's terms s_g·Σq·x and s_g·z·Σx are multiples of 2^−7 whose
    /// magnitudes sum below 2^24·2^−7 (at most 30·4·15 + 2·127·15 = 5610 per 32 columns for the 4-bit codes, times 3,
    /// times 344 groups, twice; 30·4·128 + 2·127·128 = 47872 per group times 128 groups for the 8-bit codes), and every
    /// partial sum is a float.
    /// </summary>
    private static IEnumerable<KernelSelfTestResult> ExactResults(int threads, int seed)
    {
        foreach ((IMatMulKernel kernel, int bits) in SimdKernels(threads))
        {
            IMatMulKernel twin = ScalarTwin(kernel, bits);
            if (twin is not (ScalarInt4Kernel or ScalarInt8Kernel or ScalarGroupedInt8Kernel)) continue;
            int maxCode = bits == 8 ? 127 : 7;
            foreach ((int tokens, int longCols) in ExactShapes)
            {
                int cols = twin is ScalarInt4Kernel ? longCols : longCols - 11008 + 4096;
                var random = new Random(HashCode.Combine(seed, tokens, cols, "exact"));
                float[] x = ExactActivations(random, tokens, cols, maxCode); // (tokens, cols)
                var none = new double[tokens * ExactRows];
                string shape = $"tokens {tokens}, cols {cols}, rows {ExactRows}";
                switch (twin)
                {
                    case ScalarInt4Kernel:
                        foreach ((int groupSize, bool asymmetric) in new[] { (32, false), (128, true) })
                        {
                            int groups = ExactRows * ((cols + groupSize - 1) / groupSize);
                            float[] scales = ExactScales(random, groups, factors: 2);
                            PackedInt4Matrix w4 = asymmetric
                                ? PackedInt4Matrix.FromAsymmetricCodes(RandomBytes(random, ExactRows * cols, 16, everyPlanted: 89), scales, RandomBytes(random, groups, 16, everyPlanted: 7), ExactRows, cols, groupSize)
                                : PackedInt4Matrix.FromSymmetricCodes(RandomBytes(random, ExactRows * cols, 16, everyPlanted: 89).Select(b => (sbyte)(b - PackedInt4Matrix.SymmetricZeroPoint)).ToArray(), scales, ExactRows, cols, groupSize);
                            yield return Compare(kernel, twin, w4, x, tokens, $"{shape}, g{groupSize} {(asymmetric ? "asym" : "sym")}", none) with { Kernel = kernel.Name + " exact" };
                        }
                        break;
                    case ScalarInt8Kernel:
                        sbyte[] rowCodes = RandomBytes(random, ExactRows * cols, 256, everyPlanted: 97).Select(b => (sbyte)(b - 128)).ToArray();
                        yield return Compare(kernel, twin, new Int8RowMatrix(rowCodes, ExactScales(random, ExactRows, factors: 2), ExactRows, cols), x, tokens, shape, none) with { Kernel = kernel.Name + " exact" };
                        break;
                    default:
                        sbyte[] groupCodes = RandomBytes(random, ExactRows * cols, 256, everyPlanted: 97).Select(b => (sbyte)(b - 128)).ToArray();
                        GroupedInt8Matrix wg = GroupedInt8Matrix.FromGroupScales(groupCodes, ExactScales(random, ExactRows * ((cols + 31) / 32), factors: 1), [], ExactRows, cols, 32);
                        yield return Compare(kernel, twin, wg, x, tokens, $"{shape}, Q8Like", none) with { Kernel = kernel.Name + " exact" };
                        break;
                }
            }
        }
    }

    // x[t, c] integer in [−4, 4], with +maxCode at column 3 and −maxCode at column 17 of every 32
    private static float[] ExactActivations(Random random, int tokens, int cols, int maxCode)
    {
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < cols; c++)
                x[t * cols + c] = (c % 32) switch { 3 => maxCode, 17 => -maxCode, _ => random.Next(-4, 5) };
        return x;
    }

    // ±{1, 3}·2^−7 (factors 2) or ±2^−7 (factors 1), a quarter of them negative
    private static float[] ExactScales(Random random, int count, int factors) =>
        Enumerable.Range(0, count).Select(_ => (random.Next(factors) == 0 ? 1f : 3f) * (random.Next(4) == 0 ? -1f : 1f) / 128f).ToArray();

    // values 0..range−1 at random, the two extremes planted at every `everyPlanted`-th position
    private static byte[] RandomBytes(Random random, int count, int range, int everyPlanted) =>
        Enumerable.Range(0, count).Select(i => (byte)(i % everyPlanted == 0 ? range - 1 : i % everyPlanted == 1 ? 0 : random.Next(range))).ToArray();

    /// <summary>
    /// Every SIMD path of every catalog entry supported here (<see cref="KernelCatalogEntry.CreateSelfTestKernels"/>),
    /// at each activation width; a kernel two entries share (the AVX2 FP32 kernel) or that ignores the width (FP32) once.
    /// </summary>
    internal static IEnumerable<(IMatMulKernel Kernel, int ActivationBits)> SimdKernels(int threads)
    {
        var seen = new HashSet<string>();
        foreach (KernelCatalogEntry entry in KernelCatalog.Entries)
        {
            if (entry == KernelCatalog.Scalar || !entry.IsSupported) continue;
            foreach (int bits in new[] { 8, 4 })
                foreach (IMatMulKernel kernel in entry.CreateSelfTestKernels(bits, threads))
                    if (seen.Add(kernel.Name)) yield return (kernel, bits);
        }
    }

    /// <summary>The scalar kernel of the weight format <paramref name="kernel"/> multiplies by, at <paramref name="activationBits"/>.</summary>
    internal static IMatMulKernel ScalarTwin(IMatMulKernel kernel, int activationBits)
    {
        IReadOnlyList<IMatMulKernel> scalar = KernelCatalog.Scalar.CreateKernels(activationBits, threads: 1);
        foreach (IWeightMatrix probe in FormatProbes)
            if (kernel.Supports(probe))
                return scalar.FirstOrDefault(twin => twin.Supports(probe))
                    ?? throw new NotSupportedException($"No scalar kernel multiplies {probe.GetType().Name}, the format of {kernel.Name}.");
        throw new NotSupportedException($"Kernel {kernel.Name} multiplies none of the weight formats {string.Join(", ", FormatProbes.Select(p => p.GetType().Name))}.");
    }

    // One 1x1 matrix of each weight format, to ask a kernel which format it takes.
    private static readonly IWeightMatrix[] FormatProbes =
    [
        new Fp32Matrix([0f], 1, 1),
        new Int8RowMatrix([(sbyte)0], [1f], 1, 1),
        PackedInt4Matrix.FromSymmetricCodes([(sbyte)0], [1f], 1, 1, 32),
        SuperBlockInt4SelfTest.Probe,
        GroupedInt8Matrix.FromGroupScales([(sbyte)0], [1f], [], 1, 1, 32),
    ];

    internal static KernelSelfTestResult Compare(IMatMulKernel kernel, IMatMulKernel scalar, IWeightMatrix w, float[] x, int tokens, string shape, double[] tolerance)
    {
        var expected = new float[tokens * w.Rows];
        // One guard element past the end: a kernel must not write beyond (tokens, Rows).
        var actual = new float[tokens * w.Rows + 1];
        actual[^1] = 12345.5f;
        scalar.MatMul(w, x, expected, tokens);
        kernel.MatMul(w, x, actual.AsSpan(0, expected.Length), tokens);
        double maxError = 0, allowed = 0;
        bool passed = actual[^1] == 12345.5f;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs((double)actual[i] - expected[i]);
            double limit = tolerance[i];
            bool ok = error <= limit || (float.IsNaN(actual[i]) && float.IsNaN(expected[i]));
            passed &= ok;
            if (!(error <= maxError)) (maxError, allowed) = (error, limit);
        }
        return new KernelSelfTestResult(kernel.Name, shape, passed, maxError, allowed);
    }

    private static double[] FloatTolerance(float[] x, float[] w, int tokens, int rows, int cols)
    {
        var tolerance = new double[tokens * rows];
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double magnitude = 0;
                for (int c = 0; c < cols; c++) magnitude += Math.Abs((double)x[t * cols + c] * w[r * cols + c]);
                tolerance[t * rows + r] = 1e-6 * Math.Sqrt(cols) * magnitude;
            }
        return tolerance;
    }

    /// <summary>
    /// Per-output error budget of an integer kernel against its scalar twin: <c>1e-6 · √cols · s_x[t] ·
    /// Σ_c |x_q[t, c] · W[r, c]|</c>, x quantized per token with <paramref name="bits"/> bits, W dequantized.
    /// </summary>
    internal static double[] QuantizedTolerance(ReadOnlySpan<float> x, int tokens, int bits, int rows, int cols, Func<int, int, float> weight)
    {
        var tolerance = new double[tokens * rows];
        var codes = new sbyte[cols];
        for (int t = 0; t < tokens; t++)
        {
            float scale = Quantization.RowQuantizer.QuantizeSymmetric(x.Slice(t * cols, cols), bits, codes);
            for (int r = 0; r < rows; r++)
            {
                double magnitude = 0;
                for (int c = 0; c < cols; c++) magnitude += Math.Abs((double)codes[c] * weight(r, c));
                tolerance[t * rows + r] = 1e-6 * Math.Sqrt(cols) * scale * magnitude;
            }
        }
        return tolerance;
    }

    internal static float[] Values(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    private static Int8RowMatrix Int8Weights(Random random, int rows, int cols, int smallestCode)
    {
        var codes = new sbyte[rows * cols];
        for (int i = 0; i < codes.Length; i++) codes[i] = (sbyte)random.Next(smallestCode, 128);
        var scales = new float[rows];
        for (int r = 0; r < rows; r++) scales[r] = (float)(0.001 + 0.01 * random.NextDouble());
        return new Int8RowMatrix(codes, scales, rows, cols);
    }

    /// <summary>
    /// Grouped 8-bit weights laid out as <paramref name="layout"/> (the GGUF type each mirrors), codes in its range:
    /// Q8_0's −128..127 (−127..127 when <paramref name="symmetricCodes"/>, so the AVX-512 sign-variant route runs), Q6_K's
    /// −32..31 with int8 sub-scales −128..127, Q5_K's 0..31 with 6-bit sub-scales and sub-offsets, Q5_1's 0..31 with a float
    /// scale and offset per group (not halves: the float encoding), and groups of 16 with float scales.
    /// </summary>
    internal static GroupedInt8Matrix GroupedInt8Weights(Random random, int rows, int cols, GroupedInt8Layout layout, bool symmetricCodes)
    {
        int groupSize = layout is GroupedInt8Layout.Q6KLike or GroupedInt8Layout.Groups16Float ? 16 : 32;
        int groups = (cols + groupSize - 1) / groupSize;
        (int low, int high) = layout switch
        {
            GroupedInt8Layout.Q8Like or GroupedInt8Layout.Groups16Float => (symmetricCodes ? -127 : -128, 127),
            GroupedInt8Layout.Q6KLike => (-32, 31),
            _ => (0, 31),
        };
        var codes = new sbyte[rows * cols];
        for (int i = 0; i < codes.Length; i++) codes[i] = (sbyte)random.Next(low, high + 1);
        float[] Floats(int count, double scale) => Enumerable.Range(0, count).Select(_ => (float)(scale * (0.2 + random.NextDouble()))).ToArray();
        sbyte[] Bytes(int count, int min, int max) => Enumerable.Range(0, count).Select(_ => (sbyte)random.Next(min, max + 1)).ToArray();
        switch (layout)
        {
            case GroupedInt8Layout.Q8Like:
                return GroupedInt8Matrix.FromGroupScales(codes, Floats(rows * groups, 0.01).Select(s => (float)(Half)s).ToArray(), [], rows, cols, groupSize);
            case GroupedInt8Layout.Q6KLike:
                int supers16 = (groups + 15) / 16;
                return GroupedInt8Matrix.FromSuperBlockScales(codes, Floats(rows * supers16, 1e-4), Bytes(rows * groups, -128, 127), [], [], rows, cols, groupSize, 16);
            case GroupedInt8Layout.Q5KLike:
                int supers8 = (groups + 7) / 8;
                return GroupedInt8Matrix.FromSuperBlockScales(codes, Floats(rows * supers8, 1e-3), Bytes(rows * groups, 0, 63),
                    Floats(rows * supers8, 1e-3), Bytes(rows * groups, 0, 63), rows, cols, groupSize, 8);
            case GroupedInt8Layout.Q51Like:
                return GroupedInt8Matrix.FromGroupScales(codes, Floats(rows * groups, 0.01), Floats(rows * groups, 0.15), rows, cols, groupSize);
            default:
                return GroupedInt8Matrix.FromGroupScales(codes, Floats(rows * groups, 0.01), [], rows, cols, groupSize);
        }
    }

    /// <summary><paramref name="source"/> with every scale rounded to the nearest half.</summary>
    private static PackedInt4Matrix WithHalfScales(PackedInt4Matrix source)
    {
        float[] scales = source.Scales.ToArray();
        for (int i = 0; i < scales.Length; i++) scales[i] = (float)(Half)scales[i];
        return PackedInt4Matrix.FromPacked(source.Packed, scales, source.ZeroPoints, source.Rows, source.Cols, source.GroupSize);
    }

        private static PackedInt4Matrix Int4Weights(Random random, int rows, int cols, int groupSize, bool asymmetric)
    {
        int groups = rows * ((cols + groupSize - 1) / groupSize);
        var scales = new float[groups];
        for (int i = 0; i < groups; i++) scales[i] = (float)(0.01 + 0.1 * random.NextDouble());
        if (!asymmetric)
        {
            var signed = new sbyte[rows * cols];
            for (int i = 0; i < signed.Length; i++) signed[i] = (sbyte)random.Next(-8, 8);
            return PackedInt4Matrix.FromSymmetricCodes(signed, scales, rows, cols, groupSize);
        }
        var codes = new byte[rows * cols];
        for (int i = 0; i < codes.Length; i++) codes[i] = (byte)random.Next(0, 16);
        var zeros = new byte[groups];
        for (int i = 0; i < groups; i++) zeros[i] = (byte)random.Next(0, 16);
        return PackedInt4Matrix.FromAsymmetricCodes(codes, scales, zeros, rows, cols, groupSize);
    }
}

/// <summary>The grouped 8-bit layouts the self-test and the kernel tests multiply (<see cref="KernelSelfTest.GroupedInt8Weights"/>).</summary>
internal enum GroupedInt8Layout
{
    /// <summary>Groups of 32, half scales, codes −128..127 (GGUF Q8_0).</summary>
    Q8Like,

    /// <summary>Groups of 16, float super-scale per 16 groups × int8 sub-scales, codes −32..31 (Q6_K).</summary>
    Q6KLike,

    /// <summary>Groups of 32, super-block scales and offsets with 6-bit subs, codes 0..31 (Q5_K).</summary>
    Q5KLike,

    /// <summary>Groups of 32, float scales and offsets, codes 0..31 (Q5_1, with scales that are not halves).</summary>
    Q51Like,

    /// <summary>Groups of 16, float scales, codes −128..127.</summary>
    Groups16Float,
}
