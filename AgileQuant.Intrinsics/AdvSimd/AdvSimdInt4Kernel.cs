using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd W4A8 / W4A4 kernel, twin of <see cref="Scalar.ScalarInt4Kernel"/>, over the 8-row interleaved copy
/// <see cref="Int4RowBlocks"/> (see its diagram; the x86 kernels' layout, and ggml's repacked q4_0 idea): one 16-byte
/// register holds 4 rows × 4 bytes, whose low nibbles are columns 0..3 and high nibbles 4..7 of an 8-column chunk, so
/// each int32 lane ends as one row's sum and no horizontal reduction over columns is needed.
/// <c>acc[r, g] = Σ_{c∈g} nibble · x_q − z[r, g] · Σ_{c∈g} x_q</c> (exact int32), then per row, in group order,
/// <c>f = f + s_w[r, g] · acc[r, g]</c> (a multiply, then an add: not fused) and <c>y = f · s_x</c>: the scalar twin's
/// float operations in its order, so equal to it bit for bit. With per-group activation scales (groups of 32,
/// <see cref="PackedInt4Matrix.TakesActivationGroupScales"/>) the scales are first multiplied by the token's s_x[t, g]:
/// <c>f = f + (s_w[r, g] · s_x[t, g]) · acc[r, g]</c>, still the twin's order.
/// </summary>
/// <remarks>
/// Three ways to the products, one per core kind:
/// <list type="bullet">
/// <item>SDOT by quadruplet (<c>Dp.DotProductBySelectedQuadruplet</c>, Cortex-A76 and later): the 8 activation codes of a
/// chunk in one register, quadruplet 0 against the low nibbles, 1 against the high ones, straight into int32 lanes.</item>
/// <item>Without SDOT, 8-bit activations: <c>SMLAL</c> / <c>SMLAL2</c> of the nibbles against the quadruplets repeated,
/// into int16 lanes (row, column mod 4): ≤ 8 products of ≤ 15 · 127 per lane per 32-column segment (≤ 15240, no
/// overflow), then <c>SADDLP</c> + <c>ADDP</c> to one int32 per row.</item>
/// <item>Without SDOT, 4-bit activations: the paper's packed 4-bit multiplier (docs/method.md §4): one 8-bit <c>MUL</c>
/// gives 16 nibble × code products, each |p| ≤ 15 · 7 = 105 so exact in a signed byte, and <c>SADALP</c> splits each
/// 16-bit lane's two product fields and adds them into int16 (≤ 16 products per lane per segment, ≤ 1680).</item>
/// </list>
/// The zero point is applied per 32-column segment with the segment's code sum (one vector subtract, or multiply-subtract
/// when each group has its own), the scales per group with a convert, a multiply and an add over 4 rows at once. One
/// token (decode) walks a pair of row blocks (16 rows, the pair's whole 64-byte line per chunk); more tokens (prefill)
/// walk one block × a tile of tokens (4 with SDOT, 2 otherwise) per weight load, row panels of 8 blocks at a time; with SDOT
/// and groups of 32 columns the tile walks two groups per step, starts each group's int32 sums at <c>z · (−Σ x_q)</c> (a widening
/// multiply by element per quad and token, the 4 tokens' negated sums in one register: <see cref="GroupTileSums"/>) and reads each
/// token's 32 codes of a group with one load pair (quadruplets 0..3 of two registers): docs/kernels.md, "ARM64 W4A8 GEMM tile" and its second pass.
/// </remarks>
internal sealed unsafe class AdvSimdInt4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    /// <summary>Columns per activation-sum segment (4 chunks; the int16 lanes' safe span).</summary>
    private const int SegmentColumns = 32;

    /// <summary>Row blocks whose weights stay in L2 while every token tile passes over them.</summary>
    private const int PanelBlocks = 8;

    private const int ChunkStride = Int4RowBlocks.ChunkStride, GroupStride = Int4RowBlocks.GroupStride;

    /// <summary>Chunks per 32-column group of the SDOT group tile.</summary>
    private const int GroupChunks = SegmentColumns / Int4RowBlocks.ChunkColumns;

    /// <summary>
    /// Groups per loop step of the SDOT group tile (GroupTile): the step's pointer updates and loop test are shared. (With 4 the
    /// JIT keeps the float sums on the stack: docs/kernels.md, "ARM64 W4A8 GEMM tile, second pass".)
    /// </summary>
    private const int StepGroups = 2;

    private readonly Int4DotPath _path;

    /// <summary>Whether this CPU and runtime allow the kernel (64-bit ARM AdvSimd enabled).</summary>
    public static bool IsSupported => Arm.AdvSimd.Arm64.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not supported.</summary>
    /// <param name="activationBits">8 (W4A8) or 4 (W4A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="useDotProduct">Use SDOT (default: when <c>Dp.IsSupported</c>); false forces the paths for cores without it.</param>
    public AdvSimdInt4Kernel(int activationBits = 8, int threads = 0, bool? useDotProduct = null)
        : base(activationBits, threads, IsSupported && (useDotProduct != true || Arm.Dp.IsSupported), "64-bit ARM AdvSimd (and Dp for SDOT)")
    {
        _path = useDotProduct ?? Arm.Dp.IsSupported ? Int4DotPath.DotProduct
            : activationBits == 4 ? Int4DotPath.PackedMultiplier
            : Int4DotPath.WideningMultiply;
    }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-advsimd-" + _path switch
    {
        Int4DotPath.DotProduct => "sdot",
        Int4DotPath.PackedMultiplier => "mul4",
        _ => "smlal",
    };

    // Activation code sums per 32-column segment (the zero-point correction), whatever the weight group size.
    private protected override int GroupSize(PackedInt4Matrix weights) => SegmentColumns;

    private protected override bool TakesGroupScales(PackedInt4Matrix weights) => weights.TakesActivationGroupScales;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // The matrix is streamed as Int4RowBlocks: repacked once, when the model is built or on the first multiplication.
    private protected override void PrepareWeights(PackedInt4Matrix weights) => weights.RepackToRowBlocks();

    // A thread's share starts on a pair of row blocks, which the one-token walk reads together.
    private protected override int RowBlock => 2 * Int4RowBlocks.BlockRows;

    // The SDOT group tile's activation terms for this call (GroupTileSums); null for the other paths.
    private protected override object? PrepareActivations(PackedInt4Matrix w, QuantizedActivations xq) =>
        UsesGroupTile(w, xq.Tokens) ? GroupTileSums.Compute(xq, w.RowBlocks!.GroupCount, w.RowBlocks.ZeroPoints is null ? PackedInt4Matrix.SymmetricZeroPoint : 1) : null;

    // Prefill with SDOT over groups of 32 columns (one segment each; Q4_0, W4A8 g32) takes GroupTile, the rest BlockTile.
    private bool UsesGroupTile(PackedInt4Matrix w, int tokens) =>
        _path == Int4DotPath.DotProduct && tokens > 1 && w.GroupSize == SegmentColumns && w.RowBlocks is { } blocks && blocks.Chunks % GroupChunks == 0;

    private protected override void MultiplyRows(PackedInt4Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        Int4RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        fixed (byte* packed = blocks.Packed)
        fixed (float* scales = blocks.Scales)
        fixed (byte* zeroPoints = blocks.ZeroPoints)
        fixed (sbyte* codes = xq.Codes)
        fixed (int* segmentSums = xq.GroupSums)
        fixed (float* groupScales = xq.GroupScales)
        fixed (float* tokenScales = xq.Scales)
        fixed (int* tileSums = (callState as GroupTileSums)?.Values)
        {
            var call = new Int4KernelCall(blocks, w.GroupSize, packed, scales, zeroPoints, codes, xq.Stride, segmentSums, xq.GroupCount, groupScales, tokenScales, y);
            int firstBlock = rowBegin / Int4RowBlocks.BlockRows, endBlock = (rowEnd + Int4RowBlocks.BlockRows - 1) / Int4RowBlocks.BlockRows;
            if (xq.HasGroupScales) ByPath<GroupActivationScales>(call, tileSums, xq.Tokens, firstBlock, endBlock);
            else ByPath<TokenActivationScales>(call, tileSums, xq.Tokens, firstBlock, endBlock);
        }
    }

    private void ByPath<TMode>(in Int4KernelCall call, int* tileSums, int tokens, int firstBlock, int endBlock) where TMode : struct, IActivationScaleMode
    {
        switch (_path)
        {
            case Int4DotPath.DotProduct: ByZeroPoints<DotProductPath, TMode>(call, tileSums, tokens, firstBlock, endBlock); break;
            case Int4DotPath.PackedMultiplier: ByZeroPoints<PackedMultiplierPath, TMode>(call, tileSums, tokens, firstBlock, endBlock); break;
            default: ByZeroPoints<WideningMultiplyPath, TMode>(call, tileSums, tokens, firstBlock, endBlock); break;
        }
    }

    private static void ByZeroPoints<TPath, TMode>(in Int4KernelCall call, int* tileSums, int tokens, int firstBlock, int endBlock)
        where TPath : struct, IDotPath where TMode : struct, IActivationScaleMode
    {
        if (call.ZeroPoints is null) Multiply<TPath, SymmetricZeroPoint, TMode>(call, tileSums, tokens, firstBlock, endBlock);
        else Multiply<TPath, GroupZeroPoints, TMode>(call, tileSums, tokens, firstBlock, endBlock);
    }

    // y[t, r] for the tokens and the rows of blocks [firstBlock, endBlock) (firstBlock even: a pair's first block); tileSums the
    // call's GroupTileSums when it takes GroupTile (UsesGroupTile), else null.
    private static void Multiply<TPath, TZero, TMode>(in Int4KernelCall call, int* tileSums, int tokens, int firstBlock, int endBlock)
        where TPath : struct, IDotPath where TZero : struct, IZeroPoints where TMode : struct, IActivationScaleMode
    {
        if (tokens == 1)
        {
            for (int b = firstBlock; b < endBlock; b += 2) PairGemv<TPath, TZero, TMode>(call, b >> 1);
            return;
        }
        bool groupTile = typeof(TPath) == typeof(DotProductPath) && tileSums != null;
        for (int panel = firstBlock; panel < endBlock; panel += PanelBlocks)
        {
            int panelEnd = Math.Min(endBlock, panel + PanelBlocks);
            for (int t0 = 0; t0 < tokens; t0 += TPath.TokenTile)
            {
                int n = Math.Min(TPath.TokenTile, tokens - t0);
                for (int b = panel; b < panelEnd; b++)
                    if (groupTile)
                        switch (n)
                        {
                            case 4: GroupTile<TZero, TMode, FourTokens>(call, tileSums, b, t0); break;
                            case 3: GroupTile<TZero, TMode, ThreeTokens>(call, tileSums, b, t0); break;
                            case 2: GroupTile<TZero, TMode, TwoTokens>(call, tileSums, b, t0); break;
                            default: GroupTile<TZero, TMode, OneToken>(call, tileSums, b, t0); break;
                        }
                    else
                    switch (n)
                    {
                        case 4: BlockTile<TPath, TZero, TMode, FourTokens>(call, b, t0); break;
                        case 3: BlockTile<TPath, TZero, TMode, ThreeTokens>(call, b, t0); break;
                        case 2: BlockTile<TPath, TZero, TMode, TwoTokens>(call, b, t0); break;
                        default: BlockTile<TPath, TZero, TMode, OneToken>(call, b, t0); break;
                    }
            }
        }
    }

    // y[0, 16p + i] = s_x · Σ_g s_w[i, g] · acc[i, g] for the 16 rows of block pair p (one token), rows i = 4q..4q+3 in quad q
    // (s_w[i, g] · s_x[g] with per-group activation scales, s_x = 1).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairGemv<TPath, TZero, TMode>(in Int4KernelCall w, int pair)
        where TPath : struct, IDotPath where TZero : struct, IZeroPoints where TMode : struct, IActivationScaleMode
    {
        Vector128<byte> lowNibbles = Vector128.Create((byte)0x0F);
        byte* chunk = w.Packed + Int4RowBlocks.BlockOffset(2 * pair, w.Chunks); // (chunks, 64): the pair's 16 rows × 8 columns each
        byte* end = chunk + (nint)w.Chunks * ChunkStride;
        nint groupBytes = (nint)(w.GroupSize / Int4RowBlocks.ChunkColumns) * ChunkStride;
        float* scales = w.Scales + Int4RowBlocks.BlockGroupIndex(2 * pair, w.Groups); // (groups, 16)
        byte* zeros = TZero.Present ? w.ZeroPoints + Int4RowBlocks.BlockGroupIndex(2 * pair, w.Groups) : null; // (groups, 16)
        sbyte* x = w.Codes;
        int* sums = w.SegmentSums;
        float* groupScales = w.GroupScales; // (segments) = (groups) with per-group activation scales
        Vector128<float> f0 = default, f1 = default, f2 = default, f3 = default;
        while (chunk < end)
        {
            byte* groupEnd = end - chunk > groupBytes ? chunk + groupBytes : end;
            Vector128<int> i0 = default, i1 = default, i2 = default, i3 = default;
            Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            do
            {
                if (groupEnd - chunk >= 4 * ChunkStride)
                {
                    // a whole segment: its 4 chunks unrolled
                    PairChunk<TPath>(chunk, x, lowNibbles, ref i0, ref a0, ref b0, ref i1, ref a1, ref b1, ref i2, ref a2, ref b2, ref i3, ref a3, ref b3);
                    PairChunk<TPath>(chunk + 1 * ChunkStride, x + 8, lowNibbles, ref i0, ref a0, ref b0, ref i1, ref a1, ref b1, ref i2, ref a2, ref b2, ref i3, ref a3, ref b3);
                    PairChunk<TPath>(chunk + 2 * ChunkStride, x + 16, lowNibbles, ref i0, ref a0, ref b0, ref i1, ref a1, ref b1, ref i2, ref a2, ref b2, ref i3, ref a3, ref b3);
                    PairChunk<TPath>(chunk + 3 * ChunkStride, x + 24, lowNibbles, ref i0, ref a0, ref b0, ref i1, ref a1, ref b1, ref i2, ref a2, ref b2, ref i3, ref a3, ref b3);
                    chunk += 4 * ChunkStride;
                    x += 4 * Int4RowBlocks.ChunkColumns;
                }
                else
                {
                    for (; chunk < groupEnd; chunk += ChunkStride, x += Int4RowBlocks.ChunkColumns)
                        PairChunk<TPath>(chunk, x, lowNibbles, ref i0, ref a0, ref b0, ref i1, ref a1, ref b1, ref i2, ref a2, ref b2, ref i3, ref a3, ref b3);
                }
                Vector128<int> sum = Vector128.Create(*sums++);
                i0 = EndSegment<TPath, TZero>(i0, ref a0, ref b0, zeros, sum);
                i1 = EndSegment<TPath, TZero>(i1, ref a1, ref b1, zeros + 4, sum);
                i2 = EndSegment<TPath, TZero>(i2, ref a2, ref b2, zeros + 8, sum);
                i3 = EndSegment<TPath, TZero>(i3, ref a3, ref b3, zeros + 12, sum);
            }
            while (chunk < groupEnd);
            f0 += GroupScaled<TMode>(Arm.AdvSimd.LoadVector128(scales), groupScales) * Arm.AdvSimd.ConvertToSingle(i0);
            f1 += GroupScaled<TMode>(Arm.AdvSimd.LoadVector128(scales + 4), groupScales) * Arm.AdvSimd.ConvertToSingle(i1);
            f2 += GroupScaled<TMode>(Arm.AdvSimd.LoadVector128(scales + 8), groupScales) * Arm.AdvSimd.ConvertToSingle(i2);
            f3 += GroupScaled<TMode>(Arm.AdvSimd.LoadVector128(scales + 12), groupScales) * Arm.AdvSimd.ConvertToSingle(i3);
            if (TMode.PerGroup) groupScales++;
            scales += GroupStride;
            if (TZero.Present) zeros += GroupStride;
        }
        int row = 2 * pair * Int4RowBlocks.BlockRows;
        float scale = w.TokenScales[0];
        AdvSimdEightRows.Store(f0 * scale, f1 * scale, w.Y + row, w.Rows - row);
        if (w.Rows - row > Int4RowBlocks.BlockRows) AdvSimdEightRows.Store(f2 * scale, f3 * scale, w.Y + row + Int4RowBlocks.BlockRows, w.Rows - row - Int4RowBlocks.BlockRows);
    }

    // The pair's 4 quads (rows 0..3, 4..7 of block 2p, then of 2p + 1) against one chunk of one token's codes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PairChunk<TPath>(byte* chunk, sbyte* x, Vector128<byte> lowNibbles,
        ref Vector128<int> i0, ref Vector128<int> a0, ref Vector128<int> b0, ref Vector128<int> i1, ref Vector128<int> a1, ref Vector128<int> b1,
        ref Vector128<int> i2, ref Vector128<int> a2, ref Vector128<int> b2, ref Vector128<int> i3, ref Vector128<int> a3, ref Vector128<int> b3)
        where TPath : struct, IDotPath
    {
        Vector128<byte> w0 = Arm.AdvSimd.LoadVector128(chunk), w1 = Arm.AdvSimd.LoadVector128(chunk + 16);
        Vector128<byte> w2 = Arm.AdvSimd.LoadVector128(chunk + 32), w3 = Arm.AdvSimd.LoadVector128(chunk + 48);
        Vector128<sbyte> first = TPath.First(x), second = TPath.Second(x);
        Quad<TPath>(ref i0, ref a0, ref b0, w0 & lowNibbles, Arm.AdvSimd.ShiftRightLogical(w0, 4), first, second);
        Quad<TPath>(ref i1, ref a1, ref b1, w1 & lowNibbles, Arm.AdvSimd.ShiftRightLogical(w1, 4), first, second);
        Quad<TPath>(ref i2, ref a2, ref b2, w2 & lowNibbles, Arm.AdvSimd.ShiftRightLogical(w2, 4), first, second);
        Quad<TPath>(ref i3, ref a3, ref b3, w3 & lowNibbles, Arm.AdvSimd.ShiftRightLogical(w3, 4), first, second);
    }

    // y[t, 8b + i] = s_x[t] · Σ_g s_w[i, g] · acc[t, i, g] for the N tokens t0.. and the 8 rows of block b (quads 0, 1)
    // (s_w[i, g] · s_x[t, g] with per-group activation scales, s_x[t] = 1).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockTile<TPath, TZero, TMode, N>(in Int4KernelCall w, int block, int t0)
        where TPath : struct, IDotPath where TZero : struct, IZeroPoints where TMode : struct, IActivationScaleMode where N : struct, ITokenCount
    {
        Vector128<byte> lowNibbles = Vector128.Create((byte)0x0F);
        byte* chunk = w.Packed + Int4RowBlocks.BlockOffset(block, w.Chunks); // (chunks, 64): this block's 32 bytes each
        byte* end = chunk + (nint)w.Chunks * ChunkStride;
        nint groupBytes = (nint)(w.GroupSize / Int4RowBlocks.ChunkColumns) * ChunkStride;
        float* scales = w.Scales + Int4RowBlocks.BlockGroupIndex(block, w.Groups);
        byte* zeros = TZero.Present ? w.ZeroPoints + Int4RowBlocks.BlockGroupIndex(block, w.Groups) : null;
        nint xs = w.CodeStride, ss = w.SegmentCount;
        sbyte* x = w.Codes + t0 * xs;
        int* sums = w.SegmentSums + t0 * ss;
        float* groupScales = w.GroupScales + t0 * ss; // (tokens, segments) = (tokens, groups) with per-group activation scales
        // per token t (the letter) and quad (the digit): i int32 group sums, a / b the path's accumulators, f float sums
        Vector128<float> fa0 = default, fa1 = default, fb0 = default, fb1 = default, fc0 = default, fc1 = default, fd0 = default, fd1 = default;
        while (chunk < end)
        {
            byte* groupEnd = end - chunk > groupBytes ? chunk + groupBytes : end;
            Vector128<int> ia0 = default, ia1 = default, ib0 = default, ib1 = default, ic0 = default, ic1 = default, id0 = default, id1 = default;
            Vector128<int> aa0 = default, aa1 = default, ab0 = default, ab1 = default, ac0 = default, ac1 = default, ad0 = default, ad1 = default;
            Vector128<int> ba0 = default, ba1 = default, bb0 = default, bb1 = default, bc0 = default, bc1 = default, bd0 = default, bd1 = default;
            do
            {
                byte* segmentEnd = groupEnd - chunk > 4 * ChunkStride ? chunk + 4 * ChunkStride : groupEnd;
                for (; chunk < segmentEnd; chunk += ChunkStride, x += Int4RowBlocks.ChunkColumns)
                {
                    Vector128<byte> w0 = Arm.AdvSimd.LoadVector128(chunk), w1 = Arm.AdvSimd.LoadVector128(chunk + 16);
                    Vector128<byte> low0 = w0 & lowNibbles, high0 = Arm.AdvSimd.ShiftRightLogical(w0, 4);
                    Vector128<byte> low1 = w1 & lowNibbles, high1 = Arm.AdvSimd.ShiftRightLogical(w1, 4);
                    BlockToken<TPath>(x, low0, high0, low1, high1, ref ia0, ref aa0, ref ba0, ref ia1, ref aa1, ref ba1);
                    if (N.Value > 1) BlockToken<TPath>(x + xs, low0, high0, low1, high1, ref ib0, ref ab0, ref bb0, ref ib1, ref ab1, ref bb1);
                    if (N.Value > 2) BlockToken<TPath>(x + 2 * xs, low0, high0, low1, high1, ref ic0, ref ac0, ref bc0, ref ic1, ref ac1, ref bc1);
                    if (N.Value > 3) BlockToken<TPath>(x + 3 * xs, low0, high0, low1, high1, ref id0, ref ad0, ref bd0, ref id1, ref ad1, ref bd1);
                }
                Vector128<int> sum = Vector128.Create(sums[0]);
                ia0 = EndSegment<TPath, TZero>(ia0, ref aa0, ref ba0, zeros, sum);
                ia1 = EndSegment<TPath, TZero>(ia1, ref aa1, ref ba1, zeros + 4, sum);
                if (N.Value > 1)
                {
                    sum = Vector128.Create(sums[ss]);
                    ib0 = EndSegment<TPath, TZero>(ib0, ref ab0, ref bb0, zeros, sum);
                    ib1 = EndSegment<TPath, TZero>(ib1, ref ab1, ref bb1, zeros + 4, sum);
                }
                if (N.Value > 2)
                {
                    sum = Vector128.Create(sums[2 * ss]);
                    ic0 = EndSegment<TPath, TZero>(ic0, ref ac0, ref bc0, zeros, sum);
                    ic1 = EndSegment<TPath, TZero>(ic1, ref ac1, ref bc1, zeros + 4, sum);
                }
                if (N.Value > 3)
                {
                    sum = Vector128.Create(sums[3 * ss]);
                    id0 = EndSegment<TPath, TZero>(id0, ref ad0, ref bd0, zeros, sum);
                    id1 = EndSegment<TPath, TZero>(id1, ref ad1, ref bd1, zeros + 4, sum);
                }
                sums++;
            }
            while (chunk < groupEnd);
            Vector128<float> s0 = Arm.AdvSimd.LoadVector128(scales), s1 = Arm.AdvSimd.LoadVector128(scales + 4);
            fa0 += GroupScaled<TMode>(s0, groupScales) * Arm.AdvSimd.ConvertToSingle(ia0);
            fa1 += GroupScaled<TMode>(s1, groupScales) * Arm.AdvSimd.ConvertToSingle(ia1);
            if (N.Value > 1)
            {
                fb0 += GroupScaled<TMode>(s0, groupScales + ss) * Arm.AdvSimd.ConvertToSingle(ib0);
                fb1 += GroupScaled<TMode>(s1, groupScales + ss) * Arm.AdvSimd.ConvertToSingle(ib1);
            }
            if (N.Value > 2)
            {
                fc0 += GroupScaled<TMode>(s0, groupScales + 2 * ss) * Arm.AdvSimd.ConvertToSingle(ic0);
                fc1 += GroupScaled<TMode>(s1, groupScales + 2 * ss) * Arm.AdvSimd.ConvertToSingle(ic1);
            }
            if (N.Value > 3)
            {
                fd0 += GroupScaled<TMode>(s0, groupScales + 3 * ss) * Arm.AdvSimd.ConvertToSingle(id0);
                fd1 += GroupScaled<TMode>(s1, groupScales + 3 * ss) * Arm.AdvSimd.ConvertToSingle(id1);
            }
            if (TMode.PerGroup) groupScales++;
            scales += GroupStride;
            if (TZero.Present) zeros += GroupStride;
        }
        StoreTile<N>(w, block, t0, fa0, fa1, fb0, fb1, fc0, fc1, fd0, fd1);
    }

    // y[t0 + t, 8b + i] = f[t, i] · s_x[t0 + t] for the N tokens of a tile (f: the letter the token, the digit the quad).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTile<N>(in Int4KernelCall w, int block, int t0, Vector128<float> fa0, Vector128<float> fa1, Vector128<float> fb0,
        Vector128<float> fb1, Vector128<float> fc0, Vector128<float> fc1, Vector128<float> fd0, Vector128<float> fd1) where N : struct, ITokenCount
    {
        int row = block * Int4RowBlocks.BlockRows, rows = w.Rows - row;
        float* y = w.Y + (nint)t0 * w.Rows + row;
        AdvSimdEightRows.Store(fa0 * w.TokenScales[t0], fa1 * w.TokenScales[t0], y, rows);
        if (N.Value > 1) AdvSimdEightRows.Store(fb0 * w.TokenScales[t0 + 1], fb1 * w.TokenScales[t0 + 1], y + w.Rows, rows);
        if (N.Value > 2) AdvSimdEightRows.Store(fc0 * w.TokenScales[t0 + 2], fc1 * w.TokenScales[t0 + 2], y + 2 * (nint)w.Rows, rows);
        if (N.Value > 3) AdvSimdEightRows.Store(fd0 * w.TokenScales[t0 + 3], fd1 * w.TokenScales[t0 + 3], y + 3 * (nint)w.Rows, rows);
    }

    // y[t, 8b + i] = s_x[t] · Σ_g s_w[i, g] · acc[t, i, g] for the N tokens t0.. and the 8 rows of block b, SDOT, groups of 32
    // columns, two groups per loop step (Group): the integer sum is the same as BlockTile's and the float steps are the same
    // (f = f + s_w · acc in group order, then y = f · s_x): the scalar twin's, bit for bit. docs/kernels.md, "ARM64 W4A8 GEMM tile, second pass".
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupTile<TZero, TMode, N>(in Int4KernelCall w, int* tileSums, int block, int t0)
        where TZero : struct, IZeroPoints where TMode : struct, IActivationScaleMode where N : struct, ITokenCount
    {
        const int GroupBytes = GroupChunks * ChunkStride;
        Vector128<byte> lowNibbles = Vector128.Create((byte)0x0F);
        byte* chunk = w.Packed + Int4RowBlocks.BlockOffset(block, w.Chunks); // (chunks, 64): this block's 32 bytes each
        byte* end = chunk + (nint)w.Chunks * ChunkStride;
        byte* stepsEnd = chunk + (nint)(w.Chunks / (StepGroups * GroupChunks)) * (StepGroups * GroupBytes);
        float* scales = w.Scales + Int4RowBlocks.BlockGroupIndex(block, w.Groups); // (groups, 16): this block's 8 rows of each group
        byte* zeros = TZero.Present ? w.ZeroPoints + Int4RowBlocks.BlockGroupIndex(block, w.Groups) : null; // (groups, 16), as scales
        nint xs = w.CodeStride;
        sbyte* x = w.Codes + t0 * xs; // (tokens, xs)
        int* terms = tileSums + (nint)(t0 / GroupTileSums.Tokens) * w.Groups * GroupTileSums.Entries; // (groups, 8): GroupTileSums
        // per token t (the letter) and quad (the digit): float sums
        Vector128<float> fa0 = default, fa1 = default, fb0 = default, fb1 = default, fc0 = default, fc1 = default, fd0 = default, fd1 = default;
        for (; chunk < stepsEnd; chunk += StepGroups * GroupBytes, x += StepGroups * SegmentColumns, terms += StepGroups * GroupTileSums.Entries,
             scales += StepGroups * GroupStride, zeros += TZero.Present ? StepGroups * GroupStride : 0)
        {
            sbyte* xb = x + xs, xc = xb + xs, xd = xc + xs;
            Group<TZero, TMode, N>(0, chunk, x, xb, xc, xd, scales, zeros, terms, lowNibbles, ref fa0, ref fa1, ref fb0, ref fb1, ref fc0, ref fc1, ref fd0, ref fd1);
            Group<TZero, TMode, N>(1, chunk, x, xb, xc, xd, scales, zeros, terms, lowNibbles, ref fa0, ref fa1, ref fb0, ref fb1, ref fc0, ref fc1, ref fd0, ref fd1);
        }
        for (; chunk < end; chunk += GroupBytes, x += SegmentColumns, terms += GroupTileSums.Entries, scales += GroupStride, zeros += TZero.Present ? GroupStride : 0)
        {
            // the last groups (fewer than StepGroups), one at a time
            sbyte* xb = x + xs, xc = xb + xs, xd = xc + xs;
            Group<TZero, TMode, N>(0, chunk, x, xb, xc, xd, scales, zeros, terms, lowNibbles, ref fa0, ref fa1, ref fb0, ref fb1, ref fc0, ref fc1, ref fd0, ref fd1);
        }
        StoreTile<N>(w, block, t0, fa0, fa1, fb0, fb1, fc0, fc1, fd0, fd1);
    }

    // Group k (0 or 1: a constant, so every offset below is one) of a loop step: 32 columns (4 chunks at chunk + k · 256) of the
    // block against N tokens' 32 codes each (at xa + 32k, xb + 32k, ...): acc[t] starts at −z · Σ_{c∈g} x_q[t, c] from the tile's
    // terms (GroupTileSums at terms + 8k: with zero points, SMULL by element of the block's 8 zero points as int16 against the
    // token's negated sum in int16 lane 2t; symmetric, the sum already times −8, duplicated from lane t), takes Σ nibble · x_q
    // (SDOT by quadruplet: a token's 32 codes in two registers, quadruplets 0..3 of the first for chunks 0, 1, of the second
    // for chunks 2, 3), then f[t] = f[t] + (s_w · s_x[t, g]) · acc[t] (s_x[t, g] = terms[8k + 4 + t] with per-group activation
    // scales; f = f + s_w · acc otherwise).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Group<TZero, TMode, N>(int k, byte* chunk, sbyte* xa, sbyte* xb, sbyte* xc, sbyte* xd, float* scales, byte* zeros, int* terms,
        Vector128<byte> lowNibbles, ref Vector128<float> fa0, ref Vector128<float> fa1, ref Vector128<float> fb0, ref Vector128<float> fb1,
        ref Vector128<float> fc0, ref Vector128<float> fc1, ref Vector128<float> fd0, ref Vector128<float> fd1)
        where TZero : struct, IZeroPoints where TMode : struct, IActivationScaleMode where N : struct, ITokenCount
    {
        nint codeOffset = k * SegmentColumns, chunkOffset = k * GroupChunks * ChunkStride, groupOffset = k * GroupStride;
        Vector128<int> start = Arm.AdvSimd.LoadVector128(terms + k * GroupTileSums.Entries);
        Vector128<short> z = TZero.Present ? Arm.AdvSimd.ZeroExtendWideningLower(Arm.AdvSimd.LoadVector64(zeros + groupOffset)).AsInt16() : default;
        Vector128<int> ia0, ia1, ib0 = default, ib1 = default, ic0 = default, ic1 = default, id0 = default, id1 = default;
        Vector128<sbyte> xb0 = default, xb1 = default, xc0 = default, xc1 = default, xd0 = default, xd1 = default;
        Vector128<sbyte> xa0 = Arm.AdvSimd.LoadVector128(xa + codeOffset), xa1 = Arm.AdvSimd.LoadVector128(xa + codeOffset + 16);
        if (TZero.Present)
        {
            ia0 = Arm.AdvSimd.MultiplyBySelectedScalarWideningLower(z.GetLower(), start.AsInt16(), 0);
            ia1 = Arm.AdvSimd.MultiplyBySelectedScalarWideningUpper(z, start.AsInt16(), 0);
        }
        else ia0 = ia1 = Arm.AdvSimd.DuplicateSelectedScalarToVector128(start, 0);
        if (N.Value > 1)
        {
            if (TZero.Present)
            {
                ib0 = Arm.AdvSimd.MultiplyBySelectedScalarWideningLower(z.GetLower(), start.AsInt16(), 2);
                ib1 = Arm.AdvSimd.MultiplyBySelectedScalarWideningUpper(z, start.AsInt16(), 2);
            }
            else ib0 = ib1 = Arm.AdvSimd.DuplicateSelectedScalarToVector128(start, 1);
            xb0 = Arm.AdvSimd.LoadVector128(xb + codeOffset);
            xb1 = Arm.AdvSimd.LoadVector128(xb + codeOffset + 16);
        }
        if (N.Value > 2)
        {
            if (TZero.Present)
            {
                ic0 = Arm.AdvSimd.MultiplyBySelectedScalarWideningLower(z.GetLower(), start.AsInt16(), 4);
                ic1 = Arm.AdvSimd.MultiplyBySelectedScalarWideningUpper(z, start.AsInt16(), 4);
            }
            else ic0 = ic1 = Arm.AdvSimd.DuplicateSelectedScalarToVector128(start, 2);
            xc0 = Arm.AdvSimd.LoadVector128(xc + codeOffset);
            xc1 = Arm.AdvSimd.LoadVector128(xc + codeOffset + 16);
        }
        if (N.Value > 3)
        {
            if (TZero.Present)
            {
                id0 = Arm.AdvSimd.MultiplyBySelectedScalarWideningLower(z.GetLower(), start.AsInt16(), 6);
                id1 = Arm.AdvSimd.MultiplyBySelectedScalarWideningUpper(z, start.AsInt16(), 6);
            }
            else id0 = id1 = Arm.AdvSimd.DuplicateSelectedScalarToVector128(start, 3);
            xd0 = Arm.AdvSimd.LoadVector128(xd + codeOffset);
            xd1 = Arm.AdvSimd.LoadVector128(xd + codeOffset + 16);
        }
        ChunkPair<N>(chunk, chunkOffset, xa0, xb0, xc0, xd0, lowNibbles, ref ia0, ref ia1, ref ib0, ref ib1, ref ic0, ref ic1, ref id0, ref id1);
        ChunkPair<N>(chunk, chunkOffset + 2 * ChunkStride, xa1, xb1, xc1, xd1, lowNibbles, ref ia0, ref ia1, ref ib0, ref ib1, ref ic0, ref ic1, ref id0, ref id1);
        Vector128<float> s0 = Arm.AdvSimd.LoadVector128(scales + groupOffset), s1 = Arm.AdvSimd.LoadVector128(scales + groupOffset + 4);
        // s_x[t, g] in lane t
        Vector128<float> g = TMode.PerGroup ? Arm.AdvSimd.LoadVector128((float*)terms + k * GroupTileSums.Entries + GroupTileSums.Tokens) : default;
        fa0 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s0, g, 0) : s0) * Arm.AdvSimd.ConvertToSingle(ia0);
        fa1 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s1, g, 0) : s1) * Arm.AdvSimd.ConvertToSingle(ia1);
        if (N.Value > 1)
        {
            fb0 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s0, g, 1) : s0) * Arm.AdvSimd.ConvertToSingle(ib0);
            fb1 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s1, g, 1) : s1) * Arm.AdvSimd.ConvertToSingle(ib1);
        }
        if (N.Value > 2)
        {
            fc0 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s0, g, 2) : s0) * Arm.AdvSimd.ConvertToSingle(ic0);
            fc1 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s1, g, 2) : s1) * Arm.AdvSimd.ConvertToSingle(ic1);
        }
        if (N.Value > 3)
        {
            fd0 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s0, g, 3) : s0) * Arm.AdvSimd.ConvertToSingle(id0);
            fd1 += (TMode.PerGroup ? Arm.AdvSimd.MultiplyBySelectedScalar(s1, g, 3) : s1) * Arm.AdvSimd.ConvertToSingle(id1);
        }
    }

    // Two chunks (at chunk + offset, chunk + offset + ChunkStride; offset a constant) of the block against N tokens' 16 codes (xa,
    // xb, xc, xd): quadruplets 0, 1 for the first chunk, 2, 3 for the second.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ChunkPair<N>(byte* chunk, nint offset, Vector128<sbyte> xa, Vector128<sbyte> xb, Vector128<sbyte> xc, Vector128<sbyte> xd, Vector128<byte> lowNibbles,
        ref Vector128<int> ia0, ref Vector128<int> ia1, ref Vector128<int> ib0, ref Vector128<int> ib1,
        ref Vector128<int> ic0, ref Vector128<int> ic1, ref Vector128<int> id0, ref Vector128<int> id1) where N : struct, ITokenCount
    {
        Vector128<byte> w0 = Arm.AdvSimd.LoadVector128(chunk + offset), w1 = Arm.AdvSimd.LoadVector128(chunk + offset + 16);
        Vector128<sbyte> low0 = (w0 & lowNibbles).AsSByte(), high0 = Arm.AdvSimd.ShiftRightLogical(w0, 4).AsSByte();
        Vector128<sbyte> low1 = (w1 & lowNibbles).AsSByte(), high1 = Arm.AdvSimd.ShiftRightLogical(w1, 4).AsSByte();
        ia0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ia0, low0, xa, 0), high0, xa, 1);
        ia1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ia1, low1, xa, 0), high1, xa, 1);
        if (N.Value > 1)
        {
            ib0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ib0, low0, xb, 0), high0, xb, 1);
            ib1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ib1, low1, xb, 0), high1, xb, 1);
        }
        if (N.Value > 2)
        {
            ic0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ic0, low0, xc, 0), high0, xc, 1);
            ic1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ic1, low1, xc, 0), high1, xc, 1);
        }
        if (N.Value > 3)
        {
            id0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(id0, low0, xd, 0), high0, xd, 1);
            id1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(id1, low1, xd, 0), high1, xd, 1);
        }
        w0 = Arm.AdvSimd.LoadVector128(chunk + offset + ChunkStride);
        w1 = Arm.AdvSimd.LoadVector128(chunk + offset + ChunkStride + 16);
        low0 = (w0 & lowNibbles).AsSByte();
        high0 = Arm.AdvSimd.ShiftRightLogical(w0, 4).AsSByte();
        low1 = (w1 & lowNibbles).AsSByte();
        high1 = Arm.AdvSimd.ShiftRightLogical(w1, 4).AsSByte();
        ia0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ia0, low0, xa, 2), high0, xa, 3);
        ia1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ia1, low1, xa, 2), high1, xa, 3);
        if (N.Value > 1)
        {
            ib0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ib0, low0, xb, 2), high0, xb, 3);
            ib1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ib1, low1, xb, 2), high1, xb, 3);
        }
        if (N.Value > 2)
        {
            ic0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ic0, low0, xc, 2), high0, xc, 3);
            ic1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(ic1, low1, xc, 2), high1, xc, 3);
        }
        if (N.Value > 3)
        {
            id0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(id0, low0, xd, 2), high0, xd, 3);
            id1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(id1, low1, xd, 2), high1, xd, 3);
        }
    }

    // 4 rows' weight scales s_w, times the token's activation scale of the group (*groupScale) with per-group activation scales:
    // f += (s_w · s_x[t, g]) · acc, the scalar twin's operations in its order.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> GroupScaled<TMode>(Vector128<float> weightScales, float* groupScale) where TMode : struct, IActivationScaleMode =>
        TMode.PerGroup ? weightScales * Vector128.Create(*groupScale) : weightScales;

    // One token's codes of one chunk (at x) against the block's two unpacked quads.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BlockToken<TPath>(sbyte* x, Vector128<byte> low0, Vector128<byte> high0, Vector128<byte> low1, Vector128<byte> high1,
        ref Vector128<int> i0, ref Vector128<int> a0, ref Vector128<int> b0, ref Vector128<int> i1, ref Vector128<int> a1, ref Vector128<int> b1)
        where TPath : struct, IDotPath
    {
        Vector128<sbyte> first = TPath.First(x), second = TPath.Second(x);
        Quad<TPath>(ref i0, ref a0, ref b0, low0, high0, first, second);
        Quad<TPath>(ref i1, ref a1, ref b1, low1, high1, first, second);
    }

    // 4 rows' products of one chunk: straight into the int32 sums i (SDOT), or into the path's accumulators a, b.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad<TPath>(ref Vector128<int> i, ref Vector128<int> a, ref Vector128<int> b,
        Vector128<byte> low, Vector128<byte> high, Vector128<sbyte> first, Vector128<sbyte> second) where TPath : struct, IDotPath
    {
        if (TPath.Int32Lanes) TPath.Chunk(ref i, ref i, low.AsSByte(), high.AsSByte(), first, second);
        else TPath.Chunk(ref a, ref b, low.AsSByte(), high.AsSByte(), first, second);
    }

    // i + (the path's accumulators as one int32 per row, then cleared) − z · Σ_{c∈segment} x_q, for 4 rows.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> EndSegment<TPath, TZero>(Vector128<int> i, ref Vector128<int> a, ref Vector128<int> b, byte* zeros, Vector128<int> sum)
        where TPath : struct, IDotPath where TZero : struct, IZeroPoints
    {
        if (!TPath.Int32Lanes)
        {
            i += TPath.RowSums(a, b);
            a = b = default;
        }
        return TZero.Subtract(i, zeros, sum);
    }

    /// <summary>How the zero points enter: <c>i − z · Σ x_q</c> for 4 rows.</summary>
    private interface IZeroPoints
    {
        /// <summary>Whether each group has its own zero points (read from memory).</summary>
        static abstract bool Present { get; }

        /// <summary><c>i − z · sum</c>, z the 4 rows' zero points at <paramref name="zeros"/> (or the symmetric 8).</summary>
        static abstract Vector128<int> Subtract(Vector128<int> i, byte* zeros, Vector128<int> sum);

    }

    private readonly struct SymmetricZeroPoint : IZeroPoints
    {
        public static bool Present => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Subtract(Vector128<int> i, byte* zeros, Vector128<int> sum) =>
            i - (sum << 3); // z = 8 (PackedInt4Matrix.SymmetricZeroPoint)

    }

    private readonly struct GroupZeroPoints : IZeroPoints
    {
        public static bool Present => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Subtract(Vector128<int> i, byte* zeros, Vector128<int> sum)
        {
            Vector128<ushort> z16 = Arm.AdvSimd.ZeroExtendWideningLower(Vector64.CreateScalar(*(uint*)zeros).AsByte());
            return Arm.AdvSimd.MultiplySubtract(i, Arm.AdvSimd.ZeroExtendWideningLower(z16.GetLower()).AsInt32(), sum);
        }

    }

    /// <summary>How one chunk's products of 4 rows reach their int32 sums.</summary>
    private interface IDotPath
    {
        /// <summary>Tokens that share one unpack of a block's chunk (prefill).</summary>
        static abstract int TokenTile { get; }

        /// <summary>Whether <see cref="Chunk"/> accumulates one int32 lane per row directly (then <see cref="RowSums"/> is not used).</summary>
        static abstract bool Int32Lanes { get; }

        /// <summary>The codes of columns 0..3 as this path takes them (8 codes at <paramref name="x"/>).</summary>
        static abstract Vector128<sbyte> First(sbyte* x);

        /// <summary>The codes of columns 4..7 as this path takes them.</summary>
        static abstract Vector128<sbyte> Second(sbyte* x);

        /// <summary>Adds Σ low · x[0..3] + high · x[4..7] of each of the 4 rows to the accumulators.</summary>
        static abstract void Chunk(ref Vector128<int> a, ref Vector128<int> b, Vector128<sbyte> low, Vector128<sbyte> high, Vector128<sbyte> first, Vector128<sbyte> second);

        /// <summary>One int32 per row of the accumulators <paramref name="a"/>, <paramref name="b"/>.</summary>
        static abstract Vector128<int> RowSums(Vector128<int> a, Vector128<int> b);
    }

    /// <summary>SDOT by quadruplet into the int32 row lanes.</summary>
    private readonly struct DotProductPath : IDotPath
    {
        public static int TokenTile => 4;

        public static bool Int32Lanes => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> First(sbyte* x) => Arm.AdvSimd.LoadVector64(x).ToVector128Unsafe(); // quadruplets 0 (columns 0..3), 1 (4..7)

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> Second(sbyte* x) => default;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(ref Vector128<int> a, ref Vector128<int> b, Vector128<sbyte> low, Vector128<sbyte> high, Vector128<sbyte> first, Vector128<sbyte> second) =>
            a = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(a, low, first, 0), high, first, 1);

        public static Vector128<int> RowSums(Vector128<int> a, Vector128<int> b) => a;
    }

    /// <summary>SMLAL into int16 lanes (row, column mod 4): a = rows 0-1, b = rows 2-3.</summary>
    private readonly struct WideningMultiplyPath : IDotPath
    {
        public static int TokenTile => 2;

        public static bool Int32Lanes => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> First(sbyte* x) => Arm.AdvSimd.LoadAndReplicateToVector128((int*)x).AsSByte(); // columns 0..3 repeated

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> Second(sbyte* x) => Arm.AdvSimd.LoadAndReplicateToVector128((int*)(x + 4)).AsSByte();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(ref Vector128<int> a, ref Vector128<int> b, Vector128<sbyte> low, Vector128<sbyte> high, Vector128<sbyte> first, Vector128<sbyte> second)
        {
            // the upper halves first: the lower halves' use is then the last, which spares the JIT a register copy each
            b = Arm.AdvSimd.MultiplyWideningUpperAndAdd(Arm.AdvSimd.MultiplyWideningUpperAndAdd(b.AsInt16(), low, first), high, second).AsInt32();
            a = Arm.AdvSimd.MultiplyWideningLowerAndAdd(Arm.AdvSimd.MultiplyWideningLowerAndAdd(a.AsInt16(), low.GetLower(), first.GetLower()), high.GetLower(), second.GetLower()).AsInt32();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> RowSums(Vector128<int> a, Vector128<int> b) =>
            Arm.AdvSimd.Arm64.AddPairwise(Arm.AdvSimd.AddPairwiseWidening(a.AsInt16()), Arm.AdvSimd.AddPairwiseWidening(b.AsInt16()));
    }

    /// <summary>The packed 4-bit multiplier: 8-bit MUL, SADALP of the two product fields per 16-bit lane (row, column pair) into a.</summary>
    private readonly struct PackedMultiplierPath : IDotPath
    {
        public static int TokenTile => 2;

        public static bool Int32Lanes => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> First(sbyte* x) => Arm.AdvSimd.LoadAndReplicateToVector128((int*)x).AsSByte();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> Second(sbyte* x) => Arm.AdvSimd.LoadAndReplicateToVector128((int*)(x + 4)).AsSByte();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(ref Vector128<int> a, ref Vector128<int> b, Vector128<sbyte> low, Vector128<sbyte> high, Vector128<sbyte> first, Vector128<sbyte> second) =>
            a = Arm.AdvSimd.AddPairwiseWideningAndAdd(Arm.AdvSimd.AddPairwiseWideningAndAdd(a.AsInt16(), Arm.AdvSimd.Multiply(low, first)), Arm.AdvSimd.Multiply(high, second)).AsInt32();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> RowSums(Vector128<int> a, Vector128<int> b) => Arm.AdvSimd.AddPairwiseWidening(a.AsInt16());
    }
}

/// <summary>How <see cref="AdvSimdInt4Kernel"/> forms its int8 dot products.</summary>
internal enum Int4DotPath
{
    /// <summary>SDOT (ARMv8.2 dot product).</summary>
    DotProduct,

    /// <summary>SMLAL widening multiply-accumulate into int16 (cores without SDOT, 8-bit activations).</summary>
    WideningMultiply,

    /// <summary>The paper's packed 4-bit multiplier (cores without SDOT, 4-bit activations).</summary>
    PackedMultiplier,
}
