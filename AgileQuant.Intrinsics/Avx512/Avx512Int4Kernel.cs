using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx512;

/// <summary>
/// AVX-512 (F + BW) W4A8 / W4A4 kernel, twin of <see cref="Scalar.ScalarInt4Kernel"/>: the GEMM tile of
/// <see cref="Avx2Int4Kernel"/> widened to 512-bit registers. One zmm holds the same 8-column chunk of two
/// adjacent row blocks of <see cref="Int4RowBlocks"/> (16 output rows, one int32 lane each), so every broadcast
/// activation feeds 16 rows (one aligned 64-byte load: the pair's chunks sit side by side), and the 32 registers hold a tile of 16 rows × 8 tokens with its int16 segment sums
/// and float accumulators. GEMV (one token) streams block pairs the same way (<see cref="Avx512Int4Gemv"/>).
/// </summary>
/// <remarks>
/// Per 32-column segment s (inside group g), for each row lane and token t, exactly as the AVX2 kernel:
/// <c>acc = Σ_{c∈s} nibble · x_q − z[r, g] · Σ_{c∈s} x_q</c> (int16 lanes ≤ 8 · 3810 = 30480 &lt; 2^15 before
/// <c>vpmaddwd</c> by 1 widens them), then <c>f += s_w[r, g] · acc</c> and finally <c>y = s_x · f</c>; with per-group activation
/// scales <c>f = f + acc · (s_w[r, g] · s_x[t, g])</c> (multiply, then add: the scalar twin's operations, bit for bit).
/// Why wider registers pay on a CPU whose vector units are 256 bits wide (AMD Zen 4 executes a 512-bit
/// operation as two halves): the multiply pipes were never the limit of the AVX2 tile, the instruction
/// front end was (about 37 instructions per 256 multiply-adds); a zmm instruction does twice the work for one
/// dispatch slot, and 32 registers let 8 tokens share one unpack of 16 rows' nibbles.
/// </remarks>
internal sealed unsafe class Avx512Int4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    /// <summary>Tokens that share one unpack of a weight chunk.</summary>
    private const int TokenTile = 8;

    /// <summary>Row blocks (8 rows each) whose weights stay in L2 while every token tile passes over them.</summary>
    private const int PanelBlocks = 8;

    /// <summary>Columns per activation-sum segment (4 chunks; the int16 lanes' safe span).</summary>
    private const int SegmentColumns = 32;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX-512 F and BW, AVX2 and FMA enabled).</summary>
    public static bool IsSupported => Avx2Int4Kernel.IsSupported && X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W4A8) or 4 (W4A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx512Int4Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX-512 F and BW, AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-avx512";

    private protected override int GroupSize(PackedInt4Matrix weights) => SegmentColumns;

    private protected override bool TakesGroupScales(PackedInt4Matrix weights) => weights.TakesActivationGroupScales;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // The matrix is streamed as Int4RowBlocks: repacked once, when the model is built or on the first multiplication.
    // Every path reads the exact half scales where they exist, so the float copy is not kept then.
    private protected override void PrepareWeights(PackedInt4Matrix weights) => weights.RepackToRowBlocks(keepFloatScales: false);

    // Two row blocks per tile: a thread's share starts on an even block.
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
            int firstBlock = rowBegin / Int4RowBlocks.BlockRows, endBlock = (rowEnd + Int4RowBlocks.BlockRows - 1) / Int4RowBlocks.BlockRows;
            var tile = new Int4KernelCall(blocks, w.GroupSize, packed, scales, zeroPoints, codes, xq.Stride, segmentSums, xq.GroupCount, groupScales, tokenScales, y, halfScales);
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
            Avx512Int4Gemv.Multiply<TMode>(tile, firstBlock, endBlock);
            return;
        }
        if (tile.HalfScales is not null) Tiles<TMode, Avx512Int4Gemv.HalfScales>(tile, (byte*)tile.HalfScales, tokens, firstBlock, endBlock);
        else Tiles<TMode, Avx512Int4Gemv.SingleScales>(tile, (byte*)tile.Scales, tokens, firstBlock, endBlock);
    }

    // panels × token tiles over blocks [firstBlock, endBlock), the group scales (TScales) at scaleBase
    private static void Tiles<TMode, TScales>(in Int4KernelCall tile, byte* scaleBase, int tokens, int firstBlock, int endBlock)
        where TMode : struct, IActivationScaleMode where TScales : struct, Avx512Int4Gemv.IGroupScales
    {
        for (int panel = firstBlock; panel < endBlock; panel += PanelBlocks)
        {
            int panelEnd = Math.Min(endBlock, panel + PanelBlocks);
            for (int t0 = 0; t0 < tokens; t0 += TokenTile)
            {
                int n = Math.Min(TokenTile, tokens - t0);
                for (int b = panel; b < panelEnd; b += 2)
                {
                    // An odd last block's partner is the zero padding block; only its own 8 rows are stored.
                    int rows = Math.Min(b + 1 < panelEnd ? 2 * Int4RowBlocks.BlockRows : Int4RowBlocks.BlockRows, tile.Rows - b * Int4RowBlocks.BlockRows);
                    switch (n)
                    {
                        case 8: PairTile<EightTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        case 7: PairTile<SevenTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        case 6: PairTile<SixTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        case 5: PairTile<FiveTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        case 4: PairTile<FourTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        case 3: PairTile<ThreeTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        case 2: PairTile<TwoTokens, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                        default: PairTile<OneToken, TMode, TScales>(tile, scaleBase, b, rows, t0); break;
                    }
                }
            }
        }
    }

    // y[t, 8b + i] = s_x[t] · Σ_s s_w[i, g(s)] · (Σ_{c∈s} nibble[i, c] · x_q[t, c] − z[i, g(s)] · Σ_{c∈s} x_q[t, c])
    // for the N tokens t0.. and the 16 rows of blocks (lower, lower + 1), the first `rows` of them stored;
    // lanes 0..7 are block lower, 8..15 block lower + 1 (s_w[i, g(s)] · s_x[t, s] with per-group activation scales, s_x[t] = 1);
    // s_w stored as TScales from scaleBase (floats, or halves widened exactly: the same values either way).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairTile<N, TMode, TScales>(in Int4KernelCall w, byte* scaleBase, int lower, int rows, int t0)
        where N : struct, ITokenCount where TMode : struct, IActivationScaleMode where TScales : struct, Avx512Int4Gemv.IGroupScales
    {
        Vector512<byte> lowNibbles = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        int chunks = w.Chunks, groups = w.Groups;
        int groupShift = w.GroupShift;
        nint pair = lower >> 1;
        byte* chunk0 = w.Packed + pair * chunks * Int4RowBlocks.ChunkStride; // (chunks, 64)
        byte* scales = scaleBase + pair * groups * Int4RowBlocks.GroupStride * TScales.ElementBytes; // (groups, 16)
        byte* zeros = w.ZeroPoints is null ? null : w.ZeroPoints + pair * groups * Int4RowBlocks.GroupStride; // (groups, 16)
        sbyte* x0 = w.Codes + (nint)t0 * w.CodeStride;
        nint xs = w.CodeStride;
        int* sums0 = w.SegmentSums + (nint)t0 * w.SegmentCount;
        float* gs0 = w.GroupScales + (nint)t0 * w.SegmentCount; // (tokens, segments), as the sums
        nint ss = w.SegmentCount;
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int k = 0, segment = 0; k < chunks; segment++)
        {
            int g = segment >> groupShift;
            int end = Math.Min(chunks, k + SegmentColumns / Int4RowBlocks.ChunkColumns);
            Vector512<short> h0 = default, h1 = default, h2 = default, h3 = default, h4 = default, h5 = default, h6 = default, h7 = default;
            for (; k < end; k++)
            {
                Vector512<byte> pairs = Vector512.Load(chunk0 + (nint)k * Int4RowBlocks.ChunkStride);
                Vector512<byte> low = pairs & lowNibbles;
                Vector512<byte> high = X86.Avx512BW.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
                sbyte* x = x0 + k * Int4RowBlocks.ChunkColumns;
                h0 += ChunkProducts(low, high, x);
                if (N.Value > 1) h1 += ChunkProducts(low, high, x + xs);
                if (N.Value > 2) h2 += ChunkProducts(low, high, x + 2 * xs);
                if (N.Value > 3) h3 += ChunkProducts(low, high, x + 3 * xs);
                if (N.Value > 4) h4 += ChunkProducts(low, high, x + 4 * xs);
                if (N.Value > 5) h5 += ChunkProducts(low, high, x + 5 * xs);
                if (N.Value > 6) h6 += ChunkProducts(low, high, x + 6 * xs);
                if (N.Value > 7) h7 += ChunkProducts(low, high, x + 7 * xs);
            }
            Vector512<int> zero = zeros is null
                ? Vector512.Create(PackedInt4Matrix.SymmetricZeroPoint)
                : X86.Avx512F.ConvertToVector512Int32(Vector128.Load(zeros + g * Int4RowBlocks.GroupStride));
            Vector512<float> scale = TScales.Load(scales + (nint)g * Int4RowBlocks.GroupStride * TScales.ElementBytes);
            f0 = SegmentEpilogue<TMode>(h0, ones, zero, sums0[segment], scale, gs0 + segment, f0);
            if (N.Value > 1) f1 = SegmentEpilogue<TMode>(h1, ones, zero, sums0[ss + segment], scale, gs0 + ss + segment, f1);
            if (N.Value > 2) f2 = SegmentEpilogue<TMode>(h2, ones, zero, sums0[2 * ss + segment], scale, gs0 + 2 * ss + segment, f2);
            if (N.Value > 3) f3 = SegmentEpilogue<TMode>(h3, ones, zero, sums0[3 * ss + segment], scale, gs0 + 3 * ss + segment, f3);
            if (N.Value > 4) f4 = SegmentEpilogue<TMode>(h4, ones, zero, sums0[4 * ss + segment], scale, gs0 + 4 * ss + segment, f4);
            if (N.Value > 5) f5 = SegmentEpilogue<TMode>(h5, ones, zero, sums0[5 * ss + segment], scale, gs0 + 5 * ss + segment, f5);
            if (N.Value > 6) f6 = SegmentEpilogue<TMode>(h6, ones, zero, sums0[6 * ss + segment], scale, gs0 + 6 * ss + segment, f6);
            if (N.Value > 7) f7 = SegmentEpilogue<TMode>(h7, ones, zero, sums0[7 * ss + segment], scale, gs0 + 7 * ss + segment, f7);
        }
        int row = lower * Int4RowBlocks.BlockRows;
        float* y = w.Y + (nint)t0 * w.Rows + row;
        StoreRows(f0 * w.TokenScales[t0], y, rows);
        if (N.Value > 1) StoreRows(f1 * w.TokenScales[t0 + 1], y + w.Rows, rows);
        if (N.Value > 2) StoreRows(f2 * w.TokenScales[t0 + 2], y + 2 * (nint)w.Rows, rows);
        if (N.Value > 3) StoreRows(f3 * w.TokenScales[t0 + 3], y + 3 * (nint)w.Rows, rows);
        if (N.Value > 4) StoreRows(f4 * w.TokenScales[t0 + 4], y + 4 * (nint)w.Rows, rows);
        if (N.Value > 5) StoreRows(f5 * w.TokenScales[t0 + 5], y + 5 * (nint)w.Rows, rows);
        if (N.Value > 6) StoreRows(f6 * w.TokenScales[t0 + 6], y + 6 * (nint)w.Rows, rows);
        if (N.Value > 7) StoreRows(f7 * w.TokenScales[t0 + 7], y + 7 * (nint)w.Rows, rows);
    }

    // int16 lanes: Σ nibble · x_q over one chunk of 16 rows, columns 0..3 (low nibbles) plus 4..7 (high), each pair ≤ 3810.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ChunkProducts(Vector512<byte> low, Vector512<byte> high, sbyte* x) =>
        X86.Avx512BW.MultiplyAddAdjacent(low, Vector512.Create(*(int*)x).AsSByte())
        + X86.Avx512BW.MultiplyAddAdjacent(high, Vector512.Create(*(int*)(x + 4)).AsSByte());

    // f + s_w · (widen(h) − z · Σx): the exact int32 segment accumulator, scaled into the float lanes (ScaleAdd).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> SegmentEpilogue<TMode>(Vector512<short> h, Vector512<short> ones, Vector512<int> zero, int activationSum, Vector512<float> scale,
        float* groupScale, Vector512<float> f) where TMode : struct, IActivationScaleMode =>
        ScaleAdd<TMode>(X86.Avx512BW.MultiplyAddAdjacent(h, ones) - X86.Avx512F.MultiplyLow(zero, Vector512.Create(activationSum)), scale, groupScale, f);

    // fma(acc, s_w, f) per token; with per-group activation scales f + acc · (s_w · s_x[t, g]), a multiply then an add (the
    // scalar twin's operations, so equal to it bit for bit).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ScaleAdd<TMode>(Vector512<int> acc, Vector512<float> scale, float* groupScale, Vector512<float> f) where TMode : struct, IActivationScaleMode =>
        TMode.PerGroup
            ? f + X86.Avx512F.ConvertToVector512Single(acc) * (scale * Vector512.Create(*groupScale))
            : X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(acc), scale, f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector512<float> values, float* y, int rows)
    {
        if (rows == 2 * Int4RowBlocks.BlockRows)
        {
            values.Store(y);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = values.GetElement(i);
    }
}
