using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics;

/// <summary>
/// The <see cref="KernelSelfTest"/> data for <see cref="SuperBlockInt4Matrix"/>: for each shape, one seeded matrix of every
/// scheme kind the kernels branch on (plain codes with minimums in sub-blocks of 32 or 16, a code offset, a codebook;
/// super-blocks of 256 and of 32), codes, scales and minimums drawn over their whole ranges with extremes planted. The
/// kernels' epilogue order is fixed (<see cref="SuperBlockInt4MatMulKernel"/>), so a SIMD kernel must equal its scalar
/// twin exactly: tolerance 0.
/// </summary>
internal static class SuperBlockInt4SelfTest
{
    /// <summary>ggml's IQ4_NL / IQ4_XS codebook, the one non-linear codebook in use: its −127 meets the int16 bounds.</summary>
    private static ReadOnlySpan<sbyte> NonLinearCodebook => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>
    /// One scheme per kernel branch, with the ranges of its codes, sub-block scales and minimums (the ggml type of that
    /// shape in brackets): codes 0..MaxCode, scales MinScale..MaxScale, minimums 0..MaxMin.
    /// </summary>
    public static readonly (string Name, SuperBlockInt4Scheme Scheme, int MaxCode, int MinScale, int MaxScale, int MaxMin)[] Schemes =
    [
        ("s32/256 mins (Q4_K)", new SuperBlockInt4Scheme(32, 256, hasMins: true), 15, 0, 63, 63),
        ("s16/256 mins (Q2_K)", new SuperBlockInt4Scheme(16, 256, hasMins: true), 3, 0, 15, 15),
        ("s16/256 offset 4 (Q3_K)", new SuperBlockInt4Scheme(16, 256, codeOffset: 4), 7, -32, 31, 0),
        ("s32/256 codebook (IQ4_XS)", new SuperBlockInt4Scheme(32, 256, codebook: NonLinearCodebook), 15, -32, 31, 0),
        ("s32/32 codebook (IQ4_NL)", new SuperBlockInt4Scheme(32, 32, codebook: NonLinearCodebook), 15, 1, 1, 0),
        ("s32/32 mins (Q4_1)", new SuperBlockInt4Scheme(32, 32, hasMins: true), 15, 1, 1, 1),
    ];

    /// <summary>A 1×32 matrix, to ask a kernel whether it takes the format.</summary>
    public static SuperBlockInt4Matrix Probe { get; } =
        SuperBlockInt4Matrix.Create(new SuperBlockInt4Scheme(32, 32), 1, 32, new byte[16], [Half.One], [], [1], []);

    /// <summary>
    /// <paramref name="kernel"/> against <paramref name="twin"/> on every scheme, (tokens, cols rounded up to the super-block,
    /// rows), exactly.
    /// </summary>
    public static IEnumerable<KernelSelfTestResult> Run(IMatMulKernel kernel, IMatMulKernel twin, Random random, int tokens, int cols, int rows, string shape)
    {
        foreach ((string name, SuperBlockInt4Scheme scheme, int maxCode, int minScale, int maxScale, int maxMin) in Schemes)
        {
            int width = (cols + scheme.SuperBlockSize - 1) / scheme.SuperBlockSize * scheme.SuperBlockSize;
            SuperBlockInt4Matrix w = RandomMatrix(random, scheme, rows, width, maxCode, minScale, maxScale, maxMin);
            float[] x = KernelSelfTest.Values(random, tokens * width);
            yield return KernelSelfTest.Compare(kernel, twin, w, x, tokens, $"{shape} (cols {width}), {name}", new double[tokens * rows]);
        }
    }

    /// <summary>
    /// A seeded random matrix: codes 0..<paramref name="maxCode"/> (a sixth of the rows all at the maximum), sub-block scales
    /// in <paramref name="minScale"/>..<paramref name="maxScale"/> (every eighth at one end), minimums 0..<paramref name="maxMin"/>,
    /// half scales of both signs around 2^−8 (some subnormal, some zero).
    /// </summary>
    public static SuperBlockInt4Matrix RandomMatrix(Random random, SuperBlockInt4Scheme scheme, int rows, int cols, int maxCode, int minScale, int maxScale, int maxMin)
    {
        int subBlocks = rows * (cols / scheme.SubBlockSize), superBlocks = rows * (cols / scheme.SuperBlockSize);
        var packed = new byte[rows * cols / 2];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                int code = r % 6 == 5 ? maxCode : random.Next(maxCode + 1);
                packed[(r * cols + c) / 2] |= (byte)(c % 2 == 0 ? code : code << 4);
            }
        var subScales = new sbyte[subBlocks];
        for (int i = 0; i < subBlocks; i++)
            subScales[i] = (sbyte)(i % 8 == 3 ? maxScale : i % 8 == 4 ? minScale : random.Next(minScale, maxScale + 1));
        byte[] subMins = scheme.HasMins ? new byte[subBlocks] : [];
        for (int i = 0; i < subMins.Length; i++) subMins[i] = (byte)(i % 8 == 5 ? maxMin : random.Next(maxMin + 1));
        Half[] superScales = RandomHalves(random, superBlocks);
        Half[] superMins = scheme.HasMins ? RandomHalves(random, superBlocks) : [];
        return SuperBlockInt4Matrix.Create(scheme, rows, cols, packed, superScales, superMins, subScales, subMins);
    }

    // Halves of magnitude 2^−10..2^−6, a fifth negative, every eleventh subnormal, every thirteenth zero.
    private static Half[] RandomHalves(Random random, int count)
    {
        var halves = new Half[count];
        for (int i = 0; i < count; i++)
        {
            float magnitude = MathF.Pow(2, -10 + 4 * random.NextSingle());
            halves[i] = i % 13 == 7 ? Half.Zero
                : i % 11 == 4 ? BitConverter.UInt16BitsToHalf((ushort)(1 + random.Next(0x3FF)))
                : (Half)(i % 5 == 2 ? -magnitude : magnitude);
        }
        return halves;
    }
}
