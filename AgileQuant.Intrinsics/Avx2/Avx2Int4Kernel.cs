using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 W4A8 / W4A4 kernel, twin of <see cref="Scalar.ScalarInt4Kernel"/>, over the 8-row interleaved copy
/// <see cref="Int4RowBlocks"/> (see its diagram): per 8-column chunk one 32-byte load holds 8 rows; its low and
/// high nibbles (0..15, unsigned) meet the broadcast activation codes of columns 0..3 and 4..7 (signed) in two
/// <c>vpmaddubsw</c>, leaving each row's products in its own lanes, so no horizontal sum is ever needed.
/// </summary>
/// <remarks>
/// No int16 saturation: a <c>vpmaddubsw</c> pair is ≤ 2·15·127 = 3810 in magnitude, and one 32-column segment
/// (4 chunks, 8 pairs per int16 lane) sums to ≤ 30480 &lt; 2^15 before <c>vpmaddwd</c> by 1 widens it to int32.
/// Per segment s (32 columns, inside group g): <c>acc = Σ nibble · x_q − z[r, g] · Σ_{c∈s} x_q</c> (exact int32,
/// the zero point applied with <c>vpmulld</c>), then <c>f += s_w[r, g] · acc</c> (FMA, group scales loaded for 8
/// rows at once) and finally <c>y = s_x · f</c>. With AVX-VNNI, <c>vpdpbusd</c> accumulates int32 lanes directly. Outputs equal the scalar twin's up to float rounding.
/// With per-group activation scales (<see cref="PackedInt4Matrix.TakesActivationGroupScales"/>: groups of 32, one segment each)
/// <c>f = f + acc · (s_w[r, g] · s_x[t, g])</c>, a multiply then an add as the scalar twin, so equal to it bit for bit. A tile is one
/// row block × up to 4 tokens; GEMM walks row panels of 8 blocks (≤ 64 rows, L2-resident) × token tiles
/// (L1-resident), GEMV streams the weights once with software prefetch one page ahead.
/// </remarks>
internal sealed unsafe class Avx2Int4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    /// <summary>Tokens that share one unpack of a weight chunk.</summary>
    private const int TokenTile = 4;

    /// <summary>Row blocks whose weights stay in L2 while every token tile passes over them.</summary>
    private const int PanelBlocks = 8;

    /// <summary>Columns per activation-sum segment (4 chunks; the int16 lanes' safe span).</summary>
    private const int SegmentColumns = 32;

    /// <summary>How far ahead (bytes) the GEMV loop prefetches the weight and scale streams.</summary>
    private const int PrefetchBytes = 4096;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 and FMA enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported && X86.Fma.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W4A8) or 4 (W4A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2Int4Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-avx2";

    // Activation code sums per 32-column segment (the zero-point correction), whatever the weight group size.
    private protected override int GroupSize(PackedInt4Matrix weights) => SegmentColumns;

    private protected override bool TakesGroupScales(PackedInt4Matrix weights) => weights.TakesActivationGroupScales;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // The matrix is streamed as Int4RowBlocks: repacked once, when the model is built or on the first multiplication.
    // Every path reads the exact half scales where they exist, so the float copy is not kept then.
    private protected override void PrepareWeights(PackedInt4Matrix weights) => weights.RepackToRowBlocks(keepFloatScales: false);

    // Two row blocks: a thread's share starts on a pair of Int4RowBlocks, which the one-token stream reads together.
    private protected override int RowBlock => 2 * Int4RowBlocks.BlockRows;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void MultiplyRows(PackedInt4Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        Int4RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        fixed (byte* packed = blocks.Packed)
        fixed (float* scales = blocks.Scales)
        fixed (ushort* halfScales = blocks.HalfScales)
        fixed (byte* zeroPoints = blocks.ZeroPoints)
        fixed (sbyte* codes = xq.Codes)
        fixed (int* segmentSums = xq.GroupSums)
        fixed (float* groupScales = xq.GroupScales)
        fixed (float* tokenScales = xq.Scales)
        {
            var tile = new Int4KernelCall(blocks, w.GroupSize, packed, scales, zeroPoints, codes, xq.Stride, segmentSums, xq.GroupCount, groupScales, tokenScales, y, halfScales);
            int firstBlock = rowBegin / Int4RowBlocks.BlockRows, endBlock = (rowEnd + Int4RowBlocks.BlockRows - 1) / Int4RowBlocks.BlockRows;
            if (xq.HasGroupScales) Multiply<GroupActivationScales>(tile, xq.Tokens, firstBlock, endBlock);
            else Multiply<TokenActivationScales>(tile, xq.Tokens, firstBlock, endBlock);
        }
    }

    // y[t, r] for the tokens and the rows of blocks [firstBlock, endBlock): the one-token stream, or panels × token tiles;
    // group scales from the exact halves where the matrix has them, else from the floats.
    private static void Multiply<TMode>(in Int4KernelCall tile, int tokens, int firstBlock, int endBlock) where TMode : struct, IActivationScaleMode
    {
        if (tokens == 1)
        {
            Avx2Int4Gemv.Multiply<TMode>(tile, firstBlock, endBlock);
            return;
        }
        if (tile.HalfScales is not null) Tiles<TMode, Avx2Int4Gemv.HalfScales>(tile, (byte*)tile.HalfScales, tokens, firstBlock, endBlock);
        else Tiles<TMode, Avx2Int4Gemv.SingleScales>(tile, (byte*)tile.Scales, tokens, firstBlock, endBlock);
    }

    // panels × token tiles over blocks [firstBlock, endBlock), the group scales (TScales) at scaleBase
    private static void Tiles<TMode, TScales>(in Int4KernelCall tile, byte* scaleBase, int tokens, int firstBlock, int endBlock)
        where TMode : struct, IActivationScaleMode where TScales : struct, Avx2Int4Gemv.IGroupScales
    {
        for (int panel = firstBlock; panel < endBlock; panel += PanelBlocks)
        {
            int panelEnd = Math.Min(endBlock, panel + PanelBlocks);
            for (int t0 = 0; t0 < tokens; t0 += TokenTile)
            {
                int n = Math.Min(TokenTile, tokens - t0);
                for (int b = panel; b < panelEnd; b++)
                    switch (n)
                    {
                        case 4: BlockTile<FourTokens, TMode, TScales>(tile, scaleBase, b, t0); break;
                        case 3: BlockTile<ThreeTokens, TMode, TScales>(tile, scaleBase, b, t0); break;
                        case 2: BlockTile<TwoTokens, TMode, TScales>(tile, scaleBase, b, t0); break;
                        default: BlockTile<OneToken, TMode, TScales>(tile, scaleBase, b, t0); break;
                    }
            }
        }
    }

    // y[t, 8b + i] = s_x[t] · Σ_s s_w[i, g(s)] · (Σ_{c∈s} nibble[i, c] · x_q[t, c] − z[i, g(s)] · Σ_{c∈s} x_q[t, c])
    // for the N tokens t0.. and the 8 rows of block b (s_w[i, g(s)] · s_x[t, s] with per-group activation scales, s_x[t] = 1);
    // s_w stored as TScales from scaleBase (floats, or halves widened exactly: the same values either way).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockTile<N, TMode, TScales>(in Int4KernelCall w, byte* scaleBase, int b, int t0)
        where N : struct, ITokenCount where TMode : struct, IActivationScaleMode where TScales : struct, Avx2Int4Gemv.IGroupScales
    {
        Vector256<byte> lowNibbles = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        int chunks = w.Chunks, groups = w.Groups;
        // Chunk k of block b at chunk + k · ChunkStride; group g's 8 scales (zero points) at scales + g · GroupStride.
        byte* chunk = w.Packed + Int4RowBlocks.BlockOffset(b, chunks);
        byte* scales = scaleBase + (nint)Int4RowBlocks.BlockGroupIndex(b, groups) * TScales.ElementBytes; // (groups, GroupStride)
        nint scaleStride = (nint)Int4RowBlocks.GroupStride * TScales.ElementBytes;
        byte* zeros = w.ZeroPoints is null ? null : w.ZeroPoints + Int4RowBlocks.BlockGroupIndex(b, groups);
        sbyte* x0 = w.Codes + (nint)t0 * w.CodeStride;
        nint xs = w.CodeStride;
        int* sums0 = w.SegmentSums + (nint)t0 * w.SegmentCount;
        float* groupScales0 = w.GroupScales + (nint)t0 * w.SegmentCount; // (tokens, segments), as the sums
        nint ss = w.SegmentCount;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int k = 0, segment = 0; k < chunks; segment++)
        {
            int g = segment >> w.GroupShift;
            int end = Math.Min(chunks, k + SegmentColumns / Int4RowBlocks.ChunkColumns);
            if (N.Value == 1)
            {
                // The four 64-byte lines of this segment's weights (a pair's, half of each this block's) and the scale
                // line, one page ahead (the hardware prefetcher stops at 4 KiB page boundaries; 1 KiB ahead, one line
                // per segment, was slower: docs/kernels.md, "GEMV prefetch").
                X86.Sse.Prefetch0(chunk + (nint)k * Int4RowBlocks.ChunkStride + PrefetchBytes);
                X86.Sse.Prefetch0(chunk + (nint)k * Int4RowBlocks.ChunkStride + PrefetchBytes + 64);
                X86.Sse.Prefetch0(chunk + (nint)k * Int4RowBlocks.ChunkStride + PrefetchBytes + 128);
                X86.Sse.Prefetch0(chunk + (nint)k * Int4RowBlocks.ChunkStride + PrefetchBytes + 192);
                X86.Sse.Prefetch0(scales + g * scaleStride + PrefetchBytes);
            }
            Vector256<int> zero = zeros is null
                ? Vector256.Create(PackedInt4Matrix.SymmetricZeroPoint)
                : X86.Avx2.ConvertToVector256Int32(zeros + g * Int4RowBlocks.GroupStride);
            Vector256<float> scale = TScales.Load(scales + g * scaleStride);
            if (X86.AvxVnni.IsSupported)
            {
                // vpdpbusd sums the 4 nibble · x products of each row straight into int32 lanes.
                Vector256<int> v0 = default, v1 = default, v2 = default, v3 = default;
                for (; k < end; k++)
                {
                    Vector256<byte> pairs = X86.Avx.LoadVector256(chunk + (nint)k * Int4RowBlocks.ChunkStride);
                    Vector256<byte> low = pairs & lowNibbles;
                    Vector256<byte> high = X86.Avx2.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
                    sbyte* x = x0 + k * Int4RowBlocks.ChunkColumns;
                    v0 = ChunkProductsVnni(v0, low, high, x);
                    if (N.Value > 1) v1 = ChunkProductsVnni(v1, low, high, x + xs);
                    if (N.Value > 2) v2 = ChunkProductsVnni(v2, low, high, x + 2 * xs);
                    if (N.Value > 3) v3 = ChunkProductsVnni(v3, low, high, x + 3 * xs);
                }
                f0 = ScaleAdd<TMode>(v0 - zero * sums0[segment], scale, groupScales0 + segment, f0);
                if (N.Value > 1) f1 = ScaleAdd<TMode>(v1 - zero * sums0[ss + segment], scale, groupScales0 + ss + segment, f1);
                if (N.Value > 2) f2 = ScaleAdd<TMode>(v2 - zero * sums0[2 * ss + segment], scale, groupScales0 + 2 * ss + segment, f2);
                if (N.Value > 3) f3 = ScaleAdd<TMode>(v3 - zero * sums0[3 * ss + segment], scale, groupScales0 + 3 * ss + segment, f3);
                continue;
            }
            Vector256<short> h0 = default, h1 = default, h2 = default, h3 = default;
            for (; k < end; k++)
            {
                Vector256<byte> pairs = X86.Avx.LoadVector256(chunk + (nint)k * Int4RowBlocks.ChunkStride);
                Vector256<byte> low = pairs & lowNibbles;
                Vector256<byte> high = X86.Avx2.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
                sbyte* x = x0 + k * Int4RowBlocks.ChunkColumns;
                h0 += ChunkProducts(low, high, x);
                if (N.Value > 1) h1 += ChunkProducts(low, high, x + xs);
                if (N.Value > 2) h2 += ChunkProducts(low, high, x + 2 * xs);
                if (N.Value > 3) h3 += ChunkProducts(low, high, x + 3 * xs);
            }
            f0 = ScaleAdd<TMode>(SegmentAccumulator(h0, ones, zero, sums0[segment]), scale, groupScales0 + segment, f0);
            if (N.Value > 1) f1 = ScaleAdd<TMode>(SegmentAccumulator(h1, ones, zero, sums0[ss + segment]), scale, groupScales0 + ss + segment, f1);
            if (N.Value > 2) f2 = ScaleAdd<TMode>(SegmentAccumulator(h2, ones, zero, sums0[2 * ss + segment]), scale, groupScales0 + 2 * ss + segment, f2);
            if (N.Value > 3) f3 = ScaleAdd<TMode>(SegmentAccumulator(h3, ones, zero, sums0[3 * ss + segment]), scale, groupScales0 + 3 * ss + segment, f3);
        }
        int row = b * Int4RowBlocks.BlockRows, rows = Math.Min(Int4RowBlocks.BlockRows, w.Rows - row);
        float* y = w.Y + (nint)t0 * w.Rows + row;
        StoreRows(f0 * w.TokenScales[t0], y, rows);
        if (N.Value > 1) StoreRows(f1 * w.TokenScales[t0 + 1], y + w.Rows, rows);
        if (N.Value > 2) StoreRows(f2 * w.TokenScales[t0 + 2], y + 2 * (nint)w.Rows, rows);
        if (N.Value > 3) StoreRows(f3 * w.TokenScales[t0 + 3], y + 3 * (nint)w.Rows, rows);
    }

    // int16 lanes: Σ nibble · x_q over one chunk, columns 0..3 (low nibbles) plus 4..7 (high), each pair ≤ 3810.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ChunkProducts(Vector256<byte> low, Vector256<byte> high, sbyte* x) =>
        X86.Avx2.MultiplyAddAdjacent(low, Vector256.Create(*(int*)x).AsSByte())
        + X86.Avx2.MultiplyAddAdjacent(high, Vector256.Create(*(int*)(x + 4)).AsSByte());

    // acc + Σ nibble · x_q per row over one chunk by two vpdpbusd (AVX-VNNI).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ChunkProductsVnni(Vector256<int> acc, Vector256<byte> low, Vector256<byte> high, sbyte* x) =>
        X86.AvxVnni.MultiplyWideningAndAdd(
            X86.AvxVnni.MultiplyWideningAndAdd(acc, low, Vector256.Create(*(int*)x).AsSByte()), high, Vector256.Create(*(int*)(x + 4)).AsSByte());

    // The exact int32 segment accumulator scaled into the float lanes: fma(acc, s_w, f) per token; with per-group activation
    // scales f + acc · (s_w · s_x[t, g]), a multiply then an add (the scalar twin's operations, so equal to it bit for bit).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ScaleAdd<TMode>(Vector256<int> acc, Vector256<float> scale, float* groupScale, Vector256<float> f) where TMode : struct, IActivationScaleMode =>
        TMode.PerGroup
            ? f + X86.Avx.ConvertToVector256Single(acc) * (scale * Vector256.Create(*groupScale))
            : X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(acc), scale, f);

    // Exact int32 lanes Σ_{c∈s} (nibble − z) · x_q of the 8 rows: widen(h) − z · Σ_{c∈s} x_q.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SegmentAccumulator(Vector256<short> h, Vector256<short> ones, Vector256<int> zero, int activationSum) =>
        X86.Avx2.MultiplyAddAdjacent(h, ones) - X86.Avx2.MultiplyLow(zero, Vector256.Create(activationSum));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector256<float> values, float* y, int rows)
    {
        if (rows == Int4RowBlocks.BlockRows)
        {
            X86.Avx.Store(y, values);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = values.GetElement(i);
    }

    /// <summary>
    /// acc[s · 8 + i] = Σ_{c∈s} (nibble[8b + i, c] − z) · x_q[c] exactly, for every 32-column segment s of row block b and
    /// one token x (plain order, zero padded), from the kernel's own chunk and segment steps (for tests).
    /// </summary>
    internal static void SegmentAccumulators(PackedInt4Matrix w, int b, sbyte* x, int* acc)
    {
        Int4RowBlocks blocks = w.RepackToRowBlocks();
        Vector256<byte> lowNibbles = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        int chunksPerGroup = w.GroupSize / Int4RowBlocks.ChunkColumns;
        fixed (byte* packed = blocks.Packed)
        fixed (byte* zeroPoints = blocks.ZeroPoints)
            for (int k = 0, segment = 0; k < blocks.Chunks; segment++)
            {
                int g = k / chunksPerGroup, end = Math.Min(blocks.Chunks, k + SegmentColumns / Int4RowBlocks.ChunkColumns);
                int sum = 0;
                for (int c = k * Int4RowBlocks.ChunkColumns; c < end * Int4RowBlocks.ChunkColumns; c++) sum += x[c];
                Vector256<short> h = default;
                for (; k < end; k++)
                {
                    Vector256<byte> pairs = X86.Avx.LoadVector256(packed + blocks.BlockOffset(b) + (nint)k * Int4RowBlocks.ChunkStride);
                    h += ChunkProducts(pairs & lowNibbles, X86.Avx2.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles, x + k * Int4RowBlocks.ChunkColumns);
                }
                Vector256<int> zero = zeroPoints is null
                    ? Vector256.Create(PackedInt4Matrix.SymmetricZeroPoint)
                    : X86.Avx2.ConvertToVector256Int32(zeroPoints + blocks.BlockGroupIndex(b) + (nint)g * Int4RowBlocks.GroupStride);
                X86.Avx.Store(acc + segment * Int4RowBlocks.BlockRows, SegmentAccumulator(h, ones, zero, sum));
            }
    }
}
