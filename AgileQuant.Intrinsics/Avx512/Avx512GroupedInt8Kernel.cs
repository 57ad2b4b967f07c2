using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx512;

/// <summary>
/// AVX-512 (F + BW) kernel for grouped 8-bit weights (<see cref="GroupedInt8Matrix"/>), twin of
/// <see cref="Scalar.ScalarGroupedInt8Kernel"/>: the sign-variant GEMM of <see cref="Avx512Int8Kernel"/> with a float
/// epilogue per weight group. Calls it does not take (one token, fewer than <see cref="Avx512Int8Kernel.VariantMinTokens"/>,
/// or a −128 weight code) run <see cref="Avx2GroupedInt8Kernel"/>'s stream and tiles.
/// </summary>
/// <remarks>
/// Per column <c>w · x = |x| · (sign(x) · w)</c>: for a tile of 32 rows and a K slice of 8 chunks the 16 sign flips of
/// every 4-column weight chunk are tabled (16 KiB, L1; <see cref="Avx512Int8Kernel.BuildVariants"/>) and each token's
/// chunk meets the flip its 4 activation signs select in <c>vpmaddubsw(|x|, table[s])</c> + <c>vpmaddwd(·, 1)</c> +
/// <c>vpaddd</c> (int32 lane i = row i; exact: |x| ≤ 127, |w| ≤ 127). After a group's 4 or 8 chunks the int32 sums of
/// every token meet the 32 rows' group scales in <c>f ← fma(acc, s_w, f)</c> (and <c>f ← f − o_w · Σx_q</c> with
/// offsets), f kept per (token, row) in an L1 scratch across the slices; then <c>y = s_x · f</c>. A group of 16 (Q6_K) adds
/// two convert + FMA steps per token and 16 columns to the 8 multiply steps, one of 32 (Q8_0) per 32 columns.
/// </remarks>
internal sealed unsafe class Avx512GroupedInt8Kernel : QuantizedMatMulKernel<GroupedInt8Matrix>
{
    private const int TokenTile = 8;

    private const int TileRows = Avx512Int8Kernel.VariantBlocks * GroupedInt8RowBlocks.BlockRows;

    // Factors of the groups of one slice: up to 2 groups × (32 scales, 32 offsets).
    private const int SliceFactorFloats = 2 * 2 * TileRows;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX-512 F and BW, and AVX2 with FMA).</summary>
    public static bool IsSupported => Avx2GroupedInt8Kernel.IsSupported && X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx512GroupedInt8Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX-512 F and BW, and AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => $"w8g-a{ActivationBits}-avx512";

    // Activation groups are the weight groups: their sums for the offsets, their scales with per-group activation scales.
    private protected override int GroupSize(GroupedInt8Matrix weights) => weights.GroupSize;

    private protected override bool TakesGroupScales(GroupedInt8Matrix weights) => true;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // Four row blocks per sign-variant tile: a thread's share starts on a multiple of four blocks.
    private protected override int RowBlock => TileRows;

    // The matrix is streamed as GroupedInt8RowBlocks: repacked once, when the model is built or on the first multiplication.
    private protected override void PrepareWeights(GroupedInt8Matrix weights) => weights.RepackToRowBlocks();

    // Whether a call takes the sign-variant route: enough tokens to pay for the tables, no −128 code, a bounded split.
    private static bool UsesVariants(GroupedInt8RowBlocks blocks, int tokens) =>
        tokens >= Avx512Int8Kernel.VariantMinTokens && !blocks.HasMinimumCode && (long)tokens * (blocks.Chunks + 15) <= Avx512Int8Kernel.MaxSplitEntries;

    // The sign-variant route's call state: the activations split into |codes| and sign-pattern offsets; null for the other routes.
    private protected override object? PrepareActivations(GroupedInt8Matrix w, QuantizedActivations xq) =>
        w.RowBlocks is { } blocks && UsesVariants(blocks, xq.Tokens) ? Avx512Int8Kernel.SplitActivationSigns(xq, blocks.Chunks) : null;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void MultiplyRows(GroupedInt8Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        GroupedInt8RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        if (!UsesVariants(blocks, xq.Tokens))
        {
            Avx2GroupedInt8Kernel.Multiply(blocks, xq, y, rowBegin / GroupedInt8RowBlocks.BlockRows, (rowEnd + GroupedInt8RowBlocks.BlockRows - 1) / GroupedInt8RowBlocks.BlockRows);
            return;
        }
        // PrepareActivations made the split for this call on the calling thread
        var split = callState as Avx512Int8Kernel.SignSplit ?? throw new InvalidOperationException("No sign split was prepared for this call.");
        if (blocks.HasOffsets)
        {
            if (blocks.GroupSize == 16) MultiplyRowsByVariants<WithGroupOffsets, SixteenColumnGroups>(blocks, xq, split, y, rowBegin, rowEnd);
            else MultiplyRowsByVariants<WithGroupOffsets, ThirtyTwoColumnGroups>(blocks, xq, split, y, rowBegin, rowEnd);
        }
        else if (blocks.GroupSize == 16) MultiplyRowsByVariants<WithoutGroupOffsets, SixteenColumnGroups>(blocks, xq, split, y, rowBegin, rowEnd);
        else MultiplyRowsByVariants<WithoutGroupOffsets, ThirtyTwoColumnGroups>(blocks, xq, split, y, rowBegin, rowEnd);
    }

    [ThreadStatic] private static float[]? t_tileSums;
    [ThreadStatic] private static sbyte[]? t_variantTable;

    /// <summary>
    /// The sign-variant route (weights without −128, ≥ <see cref="Avx512Int8Kernel.VariantMinTokens"/> tokens) with a group
    /// epilogue: per 32-row tile, per K slice of 8 chunks (one group of 32 or two of 16), the slice's sign-variant table,
    /// the slice's group factors for the 32 rows, then every token tile's int32 group sums folded into its float sums.
    /// </summary>
    private static void MultiplyRowsByVariants<TO, TG>(GroupedInt8RowBlocks blocks, QuantizedActivations xq, Avx512Int8Kernel.SignSplit split, float* y, int rowBegin, int rowEnd)
        where TO : struct, IGroupOffsets where TG : struct, IGroupChunks
    {
        const int sliceChunks = Avx512Int8Kernel.SliceChunks;
        int tokens = xq.Tokens, chunks = blocks.Chunks;
        float[] sumArray = Avx512Int8Kernel.Scratch(ref t_tileSums, tokens * TileRows + 16);
        sbyte[] tableArray = Avx512Int8Kernel.Scratch(ref t_variantTable, sliceChunks * Avx512Int8Kernel.Variants * Avx512Int8Kernel.VariantBytes + 64);
        float* factorBase = stackalloc float[SliceFactorFloats + 16];
        float* factors = Avx512Int8Kernel.Align64(factorBase); // (groups of the slice, 2, 32): scales, then offsets
        fixed (sbyte* weights = blocks.Codes)
        fixed (byte* scaleEntries = blocks.ScaleEntries)
        fixed (float* superScales = blocks.SuperScales)
        fixed (byte* offsetEntries = blocks.OffsetEntries)
        fixed (float* superOffsets = blocks.SuperOffsets)
        fixed (sbyte* codes = xq.Codes)
        fixed (float* groupSums = xq.GroupSumsAsFloat)
        fixed (float* groupScales = xq.GroupScales)
        fixed (float* tokenScales = xq.Scales)
        fixed (int* magnitudes = split.Magnitudes)
        fixed (byte* offsets = split.Offsets)
        fixed (float* sumBase = sumArray)
        fixed (sbyte* tableBase = tableArray)
        fixed (int* patterns = Avx512Int8Kernel.s_signPatterns)
        {
            var call = new GroupedInt8KernelCall(blocks, weights, scaleEntries, superScales, offsetEntries, superOffsets, codes, xq.Stride,
                groupSums, groupScales, xq.GroupCount, tokenScales, y);
            // (tokens, TileRows) float sums of one row tile, and the slice table (SliceChunks, Variants, VariantBytes), 64-byte aligned
            float* sums = Avx512Int8Kernel.Align64(sumBase);
            sbyte* table = Avx512Int8Kernel.Align64(tableBase);
            for (int row = rowBegin; row < rowEnd; row += TileRows)
            {
                int firstBlock = row / GroupedInt8RowBlocks.BlockRows;
                new Span<float>(sums, tokens * TileRows).Clear();
                for (int k0 = 0; k0 < chunks; k0 += sliceChunks)
                {
                    int length = Math.Min(sliceChunks, chunks - k0), groups = length / TG.Value, firstGroup = k0 / TG.Value;
                    Avx512Int8Kernel.BuildVariants(weights, blocks.Blocks, chunks, firstBlock, k0, length, patterns, table);
                    for (int gi = 0; gi < groups; gi++) LoadTileFactors(call, blocks.Blocks, firstBlock, firstGroup + gi, TO.Present, factors + gi * 2 * TileRows);
                    nint slice = (nint)(k0 / sliceChunks) * tokens * sliceChunks;
                    int fullTiles = tokens / TokenTile, rest = tokens % TokenTile, done = fullTiles * TokenTile;
                    float* xsums = groupSums + firstGroup, xscales = groupScales + firstGroup;
                    if (fullTiles > 0) SliceSums<TO, TG, EightTokens>(table, groups, magnitudes + slice, offsets + slice, sums, factors, xsums, xscales, xq.GroupCount, fullTiles);
                    if (rest > 0)
                        SliceSums<TO, TG>(rest, table, groups, magnitudes + slice + done * sliceChunks, offsets + slice + done * sliceChunks, sums + done * TileRows,
                            factors, xsums + (nint)done * xq.GroupCount, xscales + (nint)done * xq.GroupCount, xq.GroupCount);
                }
                int rows = Math.Min(TileRows, blocks.Rows - row);
                for (int t = 0; t < tokens; t++)
                {
                    // y = s_x · f, the scalar twin's order
                    Vector512<float> tokenScale = Vector512.Create(tokenScales[t]);
                    Vector512<float> lower = tokenScale * Vector512.Load(sums + t * TileRows), upper = tokenScale * Vector512.Load(sums + t * TileRows + 16);
                    float* yRow = y + (nint)t * blocks.Rows + row;
                    if (rows == TileRows)
                    {
                        lower.Store(yRow);
                        upper.Store(yRow + 16);
                    }
                    else for (int i = 0; i < rows; i++) yRow[i] = i < 16 ? lower.GetElement(i) : upper.GetElement(i - 16);
                }
            }
        }
    }

    // factors[0..32) = the scales of group g for the tile's 32 rows (row blocks firstBlock .. firstBlock + 3), factors[32..64)
    // the offsets; rows past the matrix 0.
    private static void LoadTileFactors(in GroupedInt8KernelCall s, int blockCount, int firstBlock, int g, bool withOffsets, float* factors)
    {
        for (int j = 0; j < Avx512Int8Kernel.VariantBlocks; j++)
        {
            nint b = firstBlock + j;
            bool inside = b < blockCount;
            X86.Avx.Store(factors + j * GroupedInt8RowBlocks.BlockRows, inside ? Factors(s, s.ScaleEntries, s.SuperScales, b, g) : Vector256<float>.Zero);
            if (withOffsets)
                X86.Avx.Store(factors + TileRows + j * GroupedInt8RowBlocks.BlockRows, inside ? Factors(s, s.OffsetEntries, s.SuperOffsets, b, g) : Vector256<float>.Zero);
        }
    }

    private static Vector256<float> Factors(in GroupedInt8KernelCall s, byte* entries, float* supers, nint b, int g) => s.Encoding switch
    {
        GroupScaleEncoding.Single => SingleGroupFactors.Load(entries, supers, s, b, g),
        GroupScaleEncoding.Half => HalfGroupFactors.Load(entries, supers, s, b, g),
        _ => SuperBlockGroupFactors.Load(entries, supers, s, b, g),
    };

    /// <summary>sums[j · 32 + i] = fma(group sums, scales · s_x,g, sums[j · 32 + i]) (− offsets · s_x,g · Σx_q) over the slice's groups, for n ≤ 8 tokens.</summary>
    private static void SliceSums<TO, TG>(int n, sbyte* table, int groups, int* magnitudes, byte* offsets, float* sums, float* factors, float* xsums, float* xscales, int xsumStride)
        where TO : struct, IGroupOffsets where TG : struct, IGroupChunks
    {
        switch (n)
        {
            case 8: SliceSums<TO, TG, EightTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            case 7: SliceSums<TO, TG, SevenTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            case 6: SliceSums<TO, TG, SixTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            case 5: SliceSums<TO, TG, FiveTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            case 4: SliceSums<TO, TG, FourTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            case 3: SliceSums<TO, TG, ThreeTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            case 2: SliceSums<TO, TG, TwoTokens>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
            default: SliceSums<TO, TG, OneToken>(table, groups, magnitudes, offsets, sums, factors, xsums, xscales, xsumStride, tiles: 1); break;
        }
    }

    // Token j's int32 accumulators: lanes of `lower` = rows 0..15 (blocks 0, 1), of `upper` = rows 16..31 (blocks 2, 3), reset
    // per group; `tiles` consecutive token tiles of N (one call per slice for all full tiles).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SliceSums<TO, TG, N>(sbyte* table, int groups, int* magnitudes, byte* offsets, float* sums, float* factors, float* xsums, float* xscales,
        int xsumStride, int tiles)
        where TO : struct, IGroupOffsets where TG : struct, IGroupChunks where N : struct, ITokenCount
    {
        const int sliceChunks = Avx512Int8Kernel.SliceChunks, variantStride = Avx512Int8Kernel.Variants * Avx512Int8Kernel.VariantBytes;
        Vector512<short> ones = Vector512<short>.One;
        for (int tile = 0; tile < tiles; tile++, magnitudes += TokenTile * sliceChunks, offsets += TokenTile * sliceChunks, sums += TokenTile * TileRows,
             xsums += (nint)TokenTile * xsumStride, xscales += (nint)TokenTile * xsumStride)
        {
            for (int gi = 0; gi < groups; gi++)
            {
                Vector512<int> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default, l5 = default, l6 = default, l7 = default;
                Vector512<int> u0 = default, u1 = default, u2 = default, u3 = default, u4 = default, u5 = default, u6 = default, u7 = default;
                for (int kk = gi * TG.Value; kk < (gi + 1) * TG.Value; kk++)
                {
                    sbyte* chunkVariants = table + kk * variantStride;
                    int* m = magnitudes + kk;
                    byte* o = offsets + kk;
                    Avx512Int8Kernel.AddVariantProducts(ref l0, ref u0, chunkVariants, m, o, ones);
                    if (N.Value > 1) Avx512Int8Kernel.AddVariantProducts(ref l1, ref u1, chunkVariants, m + sliceChunks, o + sliceChunks, ones);
                    if (N.Value > 2) Avx512Int8Kernel.AddVariantProducts(ref l2, ref u2, chunkVariants, m + 2 * sliceChunks, o + 2 * sliceChunks, ones);
                    if (N.Value > 3) Avx512Int8Kernel.AddVariantProducts(ref l3, ref u3, chunkVariants, m + 3 * sliceChunks, o + 3 * sliceChunks, ones);
                    if (N.Value > 4) Avx512Int8Kernel.AddVariantProducts(ref l4, ref u4, chunkVariants, m + 4 * sliceChunks, o + 4 * sliceChunks, ones);
                    if (N.Value > 5) Avx512Int8Kernel.AddVariantProducts(ref l5, ref u5, chunkVariants, m + 5 * sliceChunks, o + 5 * sliceChunks, ones);
                    if (N.Value > 6) Avx512Int8Kernel.AddVariantProducts(ref l6, ref u6, chunkVariants, m + 6 * sliceChunks, o + 6 * sliceChunks, ones);
                    if (N.Value > 7) Avx512Int8Kernel.AddVariantProducts(ref l7, ref u7, chunkVariants, m + 7 * sliceChunks, o + 7 * sliceChunks, ones);
                }
                float* groupFactors = factors + gi * 2 * TileRows;
                float* groupSums = xsums + gi, groupScales = xscales + gi;
                FoldGroup<TO>(l0, u0, sums, groupFactors, groupSums, groupScales);
                if (N.Value > 1) FoldGroup<TO>(l1, u1, sums + TileRows, groupFactors, groupSums + xsumStride, groupScales + xsumStride);
                if (N.Value > 2) FoldGroup<TO>(l2, u2, sums + 2 * TileRows, groupFactors, groupSums + 2 * xsumStride, groupScales + 2 * xsumStride);
                if (N.Value > 3) FoldGroup<TO>(l3, u3, sums + 3 * TileRows, groupFactors, groupSums + 3 * xsumStride, groupScales + 3 * xsumStride);
                if (N.Value > 4) FoldGroup<TO>(l4, u4, sums + 4 * TileRows, groupFactors, groupSums + 4 * xsumStride, groupScales + 4 * xsumStride);
                if (N.Value > 5) FoldGroup<TO>(l5, u5, sums + 5 * TileRows, groupFactors, groupSums + 5 * xsumStride, groupScales + 5 * xsumStride);
                if (N.Value > 6) FoldGroup<TO>(l6, u6, sums + 6 * TileRows, groupFactors, groupSums + 6 * xsumStride, groupScales + 6 * xsumStride);
                if (N.Value > 7) FoldGroup<TO>(l7, u7, sums + 7 * TileRows, groupFactors, groupSums + 7 * xsumStride, groupScales + 7 * xsumStride);
            }
        }
    }

    // One token's float sums (32 rows at `sums`) ← fma(group sums, scales · s_x,g, sums), then − (offsets · s_x,g) · Σx_q of the
    // group (factors: 32 scales, then 32 offsets; groupSum: the token's Σx_q over the group; groupScale: its s_x,g, 1 per token).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FoldGroup<TO>(Vector512<int> lower, Vector512<int> upper, float* sums, float* factors, float* groupSum, float* groupScale)
        where TO : struct, IGroupOffsets
    {
        Vector512<float> xscale = Vector512.Create(*groupScale);
        Vector512<float> low = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(lower), Vector512.Load(factors) * xscale, Vector512.Load(sums));
        Vector512<float> high = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(upper), Vector512.Load(factors + 16) * xscale, Vector512.Load(sums + 16));
        if (TO.Present)
        {
            Vector512<float> xsum = Vector512.Create(*groupSum);
            low = X86.Avx512F.FusedMultiplyAddNegated(Vector512.Load(factors + TileRows) * xscale, xsum, low);
            high = X86.Avx512F.FusedMultiplyAddNegated(Vector512.Load(factors + TileRows + 16) * xscale, xsum, high);
        }
        low.Store(sums);
        high.Store(sums + 16);
    }
}
