using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 kernel for grouped 8-bit weights (<see cref="GroupedInt8Matrix"/>) with 8- or 4-bit activations, twin of
/// <see cref="Scalar.ScalarGroupedInt8Kernel"/>, over the interleaved copy <see cref="GroupedInt8RowBlocks"/>: per 4-column
/// chunk one 32-byte load holds 8 rows × 4 codes and meets the broadcast int32 of 4 activation codes in
/// <c>vpmaddubsw(|w|, sign(x, w))</c> + <c>vpmaddwd</c> by 1 (int32 lane i = row i); after each group's chunks
/// <c>f ← fma(acc, s_w · s_x,g, f)</c> with the 8 rows' group scales in one load times the token's activation group scale
/// (and <c>f ← f − (o_w · s_x,g) · Σx_q</c> with offsets), and finally <c>y = s_x · f</c> (s_x,g = 1 with per-token scales,
/// s_x = 1 with group scales).
/// </summary>
/// <remarks>
/// Exact: |w| ≤ 128 and |x_q| ≤ 127 (activation codes never reach −128), so a <c>vpmaddubsw</c> pair is ≤ 32512 and is
/// widened to int32 at once; a group's sum is ≤ 32 · 128 · 127. One token (decode) streams the weights once, one row
/// block after the other, prefetching a page ahead; more tokens run tiles of one row block × up to 4 tokens (int32 and
/// float accumulators in registers) over row panels of 8 blocks (L2-resident). The scale and offset entries are read in
/// the matrix's most compact exact encoding (<see cref="GroupScaleEncoding"/>): halves for Q8_0/Q5_x, an int8 per group
/// and a float per super-block for the k-quants.
/// </remarks>
internal sealed unsafe class Avx2GroupedInt8Kernel : QuantizedMatMulKernel<GroupedInt8Matrix>
{
    /// <summary>Tokens that share one load of a weight chunk.</summary>
    private const int TokenTile = 4;

    /// <summary>Row blocks whose weights stay in L2 while every token tile passes over them.</summary>
    private const int PanelBlocks = 8;

    /// <summary>How far ahead (bytes) the one-token stream prefetches the weights (the hardware prefetcher stops at 4 KiB pages).</summary>
    private const int PrefetchBytes = 4096;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 and FMA enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported && X86.Fma.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2GroupedInt8Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => $"w8g-a{ActivationBits}-avx2";

    // Activation groups are the weight groups: their sums for the offsets, their scales with per-group activation scales.
    private protected override int GroupSize(GroupedInt8Matrix weights) => weights.GroupSize;

    private protected override bool TakesGroupScales(GroupedInt8Matrix weights) => true;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    private protected override int RowBlock => GroupedInt8RowBlocks.BlockRows;

    // The matrix is streamed as GroupedInt8RowBlocks: repacked once, when the model is built or on the first multiplication.
    private protected override void PrepareWeights(GroupedInt8Matrix weights) => weights.RepackToRowBlocks();

    private protected override void MultiplyRows(GroupedInt8Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        GroupedInt8RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        Multiply(blocks, xq, y, rowBegin / GroupedInt8RowBlocks.BlockRows, (rowEnd + GroupedInt8RowBlocks.BlockRows - 1) / GroupedInt8RowBlocks.BlockRows);
    }

    /// <summary>
    /// y for the rows of row blocks [<paramref name="firstBlock"/>, <paramref name="endBlock"/>) and every token of
    /// <paramref name="xq"/>, on the calling thread: the one-token stream or the tiles. The AVX-512 kernel hands it the
    /// calls its own route does not take.
    /// </summary>
    internal static void Multiply(GroupedInt8RowBlocks blocks, QuantizedActivations xq, float* y, int firstBlock, int endBlock)
    {
        fixed (sbyte* weights = blocks.Codes)
        fixed (byte* scaleEntries = blocks.ScaleEntries)
        fixed (float* superScales = blocks.SuperScales)
        fixed (byte* offsetEntries = blocks.OffsetEntries)
        fixed (float* superOffsets = blocks.SuperOffsets)
        fixed (sbyte* codes = xq.Codes)
        fixed (float* groupSums = xq.GroupSumsAsFloat)
        fixed (float* groupScales = xq.GroupScales)
        fixed (float* tokenScales = xq.Scales)
        {
            var call = new GroupedInt8KernelCall(blocks, weights, scaleEntries, superScales, offsetEntries, superOffsets, codes, xq.Stride,
                groupSums, groupScales, xq.GroupCount, tokenScales, y);
            switch (call.Encoding)
            {
                case GroupScaleEncoding.Single: Run<SingleGroupFactors>(call, xq.Tokens, firstBlock, endBlock); break;
                case GroupScaleEncoding.Half: Run<HalfGroupFactors>(call, xq.Tokens, firstBlock, endBlock); break;
                default: Run<SuperBlockGroupFactors>(call, xq.Tokens, firstBlock, endBlock); break;
            }
        }
    }

    private static void Run<TF>(in GroupedInt8KernelCall s, int tokens, int firstBlock, int endBlock) where TF : struct, IGroupFactors
    {
        if (s.HasOffsets) Run<TF, WithGroupOffsets>(s, tokens, firstBlock, endBlock);
        else Run<TF, WithoutGroupOffsets>(s, tokens, firstBlock, endBlock);
    }

    private static void Run<TF, TO>(in GroupedInt8KernelCall s, int tokens, int firstBlock, int endBlock) where TF : struct, IGroupFactors where TO : struct, IGroupOffsets
    {
        if (s.GroupSize == 16) Run<TF, TO, SixteenColumnGroups>(s, tokens, firstBlock, endBlock);
        else Run<TF, TO, ThirtyTwoColumnGroups>(s, tokens, firstBlock, endBlock);
    }

    private static void Run<TF, TO, TG>(in GroupedInt8KernelCall s, int tokens, int firstBlock, int endBlock)
        where TF : struct, IGroupFactors where TO : struct, IGroupOffsets where TG : struct, IGroupChunks
    {
        if (tokens == 1)
        {
            Stream<TF, TO, TG>(s, firstBlock, endBlock);
            return;
        }
        for (int panel = firstBlock; panel < endBlock; panel += PanelBlocks)
        {
            int panelEnd = Math.Min(endBlock, panel + PanelBlocks);
            for (int t0 = 0; t0 < tokens; t0 += TokenTile)
            {
                int n = Math.Min(TokenTile, tokens - t0);
                for (int b = panel; b < panelEnd; b++)
                    switch (n)
                    {
                        case 4: Tile<TF, TO, TG, FourTokens>(s, b, t0); break;
                        case 3: Tile<TF, TO, TG, ThreeTokens>(s, b, t0); break;
                        case 2: Tile<TF, TO, TG, TwoTokens>(s, b, t0); break;
                        default: Tile<TF, TO, TG, OneToken>(s, b, t0); break;
                    }
            }
        }
    }

    // One token: y[8b + i] = s_x · Σ_g s_x,g · (s_w[i, g] · Σ_{c∈g} w · x_q − o_w[i, g] · Σ_{c∈g} x_q), every row block's codes read once.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Stream<TF, TO, TG>(in GroupedInt8KernelCall s, int firstBlock, int endBlock)
        where TF : struct, IGroupFactors where TO : struct, IGroupOffsets where TG : struct, IGroupChunks
    {
        Vector256<short> ones = Vector256.Create((short)1);
        const int chunkBytes = 32;
        int groupBytes = TG.Value * chunkBytes, groupColumns = TG.Value * GroupedInt8RowBlocks.ChunkColumns;
        for (nint b = firstBlock; b < endBlock; b++)
        {
            sbyte* block = s.Weights + b * s.Chunks * chunkBytes;
            Vector256<float> f = default;
            for (int g = 0; g < s.Groups; g++)
            {
                sbyte* chunk = block + (nint)g * groupBytes;
                X86.Sse.Prefetch0(chunk + PrefetchBytes);
                X86.Sse.Prefetch0(chunk + PrefetchBytes + 64);
                if (TG.Value == 8)
                {
                    X86.Sse.Prefetch0(chunk + PrefetchBytes + 128);
                    X86.Sse.Prefetch0(chunk + PrefetchBytes + 192);
                }
                sbyte* x = s.Codes + g * groupColumns;
                Vector256<int> acc = default;
                for (int k = 0; k < TG.Value; k++)
                {
                    Vector256<sbyte> w = X86.Avx.LoadVector256(chunk + k * chunkBytes);
                    acc += ChunkProducts(X86.Avx2.Abs(w), w, x + k * GroupedInt8RowBlocks.ChunkColumns, ones);
                }
                Vector256<float> groupScale = Vector256.Create(s.GroupScales[g]);
                f = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(acc), TF.Load(s.ScaleEntries, s.SuperScales, s, b, g) * groupScale, f);
                if (TO.Present) f = X86.Fma.MultiplyAddNegated(TF.Load(s.OffsetEntries, s.SuperOffsets, s, b, g) * groupScale, Vector256.Create(s.GroupSums[g]), f);
            }
            StoreBlock(s, s.Y, (int)b, Vector256.Create(s.TokenScales[0]) * f);
        }
    }

    // Row block b × tokens t0 .. t0 + N: int32 group sums and float results per token in registers, one weight load and
    // |w| per chunk shared by the N tokens.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TF, TO, TG, N>(in GroupedInt8KernelCall s, nint b, int t0)
        where TF : struct, IGroupFactors where TO : struct, IGroupOffsets where TG : struct, IGroupChunks where N : struct, ITokenCount
    {
        Vector256<short> ones = Vector256.Create((short)1);
        const int chunkBytes = 32;
        int groupBytes = TG.Value * chunkBytes, groupColumns = TG.Value * GroupedInt8RowBlocks.ChunkColumns;
        nint xs = s.CodeStride;
        sbyte* block = s.Weights + b * s.Chunks * chunkBytes;
        sbyte* x0 = s.Codes + (nint)t0 * xs;
        float* sums = s.GroupSums + (nint)t0 * s.GroupSumCount, xscales = s.GroupScales + (nint)t0 * s.GroupSumCount;
        nint ss = s.GroupSumCount;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int g = 0; g < s.Groups; g++)
        {
            sbyte* chunk = block + (nint)g * groupBytes;
            sbyte* x = x0 + g * groupColumns;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int k = 0; k < TG.Value; k++)
            {
                Vector256<sbyte> w = X86.Avx.LoadVector256(chunk + k * chunkBytes);
                Vector256<byte> magnitude = X86.Avx2.Abs(w);
                sbyte* xk = x + k * GroupedInt8RowBlocks.ChunkColumns;
                a0 += ChunkProducts(magnitude, w, xk, ones);
                if (N.Value > 1) a1 += ChunkProducts(magnitude, w, xk + xs, ones);
                if (N.Value > 2) a2 += ChunkProducts(magnitude, w, xk + 2 * xs, ones);
                if (N.Value > 3) a3 += ChunkProducts(magnitude, w, xk + 3 * xs, ones);
            }
            // the weight factors times each token's activation group scale (1 with per-token scales: exact)
            Vector256<float> scale = TF.Load(s.ScaleEntries, s.SuperScales, s, b, g);
            Vector256<float> sx0 = Vector256.Create(xscales[g]), sx1 = default, sx2 = default, sx3 = default;
            if (N.Value > 1) sx1 = Vector256.Create(xscales[ss + g]);
            if (N.Value > 2) sx2 = Vector256.Create(xscales[2 * ss + g]);
            if (N.Value > 3) sx3 = Vector256.Create(xscales[3 * ss + g]);
            f0 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a0), scale * sx0, f0);
            if (N.Value > 1) f1 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a1), scale * sx1, f1);
            if (N.Value > 2) f2 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a2), scale * sx2, f2);
            if (N.Value > 3) f3 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(a3), scale * sx3, f3);
            if (TO.Present)
            {
                Vector256<float> offset = TF.Load(s.OffsetEntries, s.SuperOffsets, s, b, g);
                f0 = X86.Fma.MultiplyAddNegated(offset * sx0, Vector256.Create(sums[g]), f0);
                if (N.Value > 1) f1 = X86.Fma.MultiplyAddNegated(offset * sx1, Vector256.Create(sums[ss + g]), f1);
                if (N.Value > 2) f2 = X86.Fma.MultiplyAddNegated(offset * sx2, Vector256.Create(sums[2 * ss + g]), f2);
                if (N.Value > 3) f3 = X86.Fma.MultiplyAddNegated(offset * sx3, Vector256.Create(sums[3 * ss + g]), f3);
            }
        }
        // y = s_x · f, the scalar twin's order
        nint ys = s.Rows;
        float* y = s.Y + t0 * ys;
        StoreBlock(s, y, (int)b, Vector256.Create(s.TokenScales[t0]) * f0);
        if (N.Value > 1) StoreBlock(s, y + ys, (int)b, Vector256.Create(s.TokenScales[t0 + 1]) * f1);
        if (N.Value > 2) StoreBlock(s, y + 2 * ys, (int)b, Vector256.Create(s.TokenScales[t0 + 2]) * f2);
        if (N.Value > 3) StoreBlock(s, y + 3 * ys, (int)b, Vector256.Create(s.TokenScales[t0 + 3]) * f3);
    }

    // int32 lanes: Σ_{c<4} w · x of one chunk, vpmaddubsw(|w|, sign(x, w)) (pairs ≤ 32512) and vpmaddwd by 1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ChunkProducts(Vector256<byte> magnitude, Vector256<sbyte> w, sbyte* x, Vector256<short> ones) =>
        X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(Vector256.Create(*(int*)x).AsSByte(), w)), ones);

    // yRow[8b .. 8b + 8) = values, the rows past the matrix's end dropped (yRow: one token's output row).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBlock(in GroupedInt8KernelCall s, float* yRow, int b, Vector256<float> values)
    {
        int row = b * GroupedInt8RowBlocks.BlockRows, rows = Math.Min(GroupedInt8RowBlocks.BlockRows, s.Rows - row);
        if (rows == GroupedInt8RowBlocks.BlockRows) X86.Avx.Store(yRow + row, values);
        else for (int i = 0; i < rows; i++) yRow[row + i] = values.GetElement(i);
    }
}
