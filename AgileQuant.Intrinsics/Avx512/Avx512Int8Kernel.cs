using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx512;

/// <summary>
/// AVX-512 (F + BW) W8A8 / W8A4 kernel, twin of <see cref="Scalar.ScalarInt8Kernel"/>: <c>acc = Σ_c w_q · x_q</c>
/// (exact int32), then <c>y = s_x · s_w · acc</c>. GEMM has two exact routes over <see cref="Int8RowBlocks"/>; GEMV
/// (one token, bandwidth-bound) runs the AVX2 kernel's streaming loop.
/// </summary>
/// <remarks>
/// <para>Sign variants (≥ <see cref="VariantMinTokens"/> tokens, no weight code −128): per column
/// <c>w · x = |x| · (sign(x) · w)</c>. For a tile of 32 rows and a K slice of 8 chunks the 16 sign flips of every
/// 4-column weight chunk are tabled (16 KiB, L1) and each token's chunk meets the flip its 4 activation signs select in
/// <c>vpmaddubsw(|x|, table[s])</c> + <c>vpmaddwd(·, 1)</c> + <c>vpaddd</c>: 64 multiply-adds per zmm with one add, where
/// the int16 route needs two (Zen 4 executes both multiplies on the same two pipes, so the adds decide).
/// Exact: |x| ≤ 127, |w| ≤ 127, pairs ≤ 32258 in int16.</para>
/// <para>Int16 pairs (fewer tokens, or a −128 code, whose flip does not fit a byte): one zmm holds the same
/// 4-column chunk of two adjacent row blocks (16 rows) sign-extended to int16; each broadcast of 4 int16 activation
/// codes meets it in <c>vpmaddwd</c>: int32 lanes 2i and 2i + 1 accumulate row i's two column pairs, summed once per
/// tile. Two chunks' products are added before they meet the accumulator. Exact: |w| ≤ 128, |x_q| ≤ 127. A tile is
/// 16 rows × up to 8 tokens; GEMM walks row panels of 8 blocks (L2-resident) × token tiles.</para>
/// </remarks>
internal sealed unsafe class Avx512Int8Kernel : QuantizedMatMulKernel<Int8RowMatrix>
{
    private const int TokenTile = 8;

    private const int PanelBlocks = 8;

    // Sign-variant route: row blocks per tile (32 rows, two zmm per token), chunks per K slice, sign patterns of 4
    // columns, bytes per (chunk, pattern) and the fewest tokens for which building the tables pays. A slice's
    // table, 8 chunks × 16 patterns × 128 bytes = 16 KiB, stays in L1 while every token tile passes over it.
    internal const int VariantBlocks = 4;

    internal const int SliceChunks = 8;

    internal const int Variants = 16;

    internal const int VariantBytes = VariantBlocks * 32;

    internal const int VariantMinTokens = 64;

    // Most (token, chunk) entries of a worker's sign split (5 bytes each, 320 MiB): larger calls take the int16 route.
    internal const long MaxSplitEntries = 1L << 26;

    // Pattern s as 4 bytes: byte c = 0xFF where bit c of s is set (activation column c negative: negate that weight
    // column), else 0.
    internal static readonly int[] s_signPatterns = [.. Enumerable.Range(0, Variants).Select(SignPattern)];

    private readonly Avx2Int8Kernel _streaming;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX-512 F and BW, and AVX2 enabled).</summary>
    public static bool IsSupported => Avx2Int8Kernel.IsSupported && X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W8A8) or 4 (W8A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx512Int8Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX-512 F and BW, and AVX2")
    {
        _streaming = new Avx2Int8Kernel(activationBits, threads: 1);
    }

    /// <inheritdoc />
    public override string Name => $"w8a{ActivationBits}-avx512";

    private protected override int GroupSize(Int8RowMatrix weights) => weights.RowStride;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // The calling thread's sign split (SplitSigns) of its activations, made once per call by PrepareActivations and handed
    // to every row chunk of that call as its call state (the thread makes its next call only after this one returns).
    [ThreadStatic] private static SignSplit? t_split;

    internal sealed class SignSplit
    {
        // (slices, tokens, SliceChunks): 4 |codes| per int, and the table offset of their sign pattern per byte
        public int[] Magnitudes = [];
        public byte[] Offsets = [];
    }

    // Whether a call takes the sign-variant route: enough tokens to pay for the tables, no −128 code, a bounded split.
    private static bool UsesVariants(Int8RowBlocks blocks, int tokens) =>
        tokens >= VariantMinTokens && !blocks.HasMinimumCode && (long)tokens * (blocks.Chunks + 15) <= MaxSplitEntries;

    // K slices of SliceChunks chunks, in pairs of 64 codes (SplitSigns' step).
    internal static int Slices(int chunks) => 2 * ((chunks + 15) / 16);

    // The matrix is streamed as Int8RowBlocks: repacked once, when the model is built or on the first multiplication.
    private protected override void PrepareWeights(Int8RowMatrix weights) => weights.RepackToRowBlocks();

    // The sign-variant route's call state: the activations split into |codes| and sign-pattern offsets; null for the other routes.
    private protected override object? PrepareActivations(Int8RowMatrix w, QuantizedActivations xq) =>
        w.RowBlocks is { } blocks && UsesVariants(blocks, xq.Tokens) ? SplitActivationSigns(xq, blocks.Chunks) : null;

    /// <summary>The calling thread's split of <paramref name="xq"/> over <paramref name="chunks"/> 4-column chunks into |codes| and sign-pattern offsets (<see cref="SplitSigns"/>), reused by its next call.</summary>
    internal static SignSplit SplitActivationSigns(QuantizedActivations xq, int chunks)
    {
        int slices = Slices(chunks), entries = slices * xq.Tokens * SliceChunks;
        Debug.Assert(xq.Stride >= slices / 2 * 64, "the activation codes are zero padded to a multiple of 64 columns");
        SignSplit split = t_split ??= new SignSplit();
        if (split.Magnitudes.Length < entries)
        {
            split.Magnitudes = GC.AllocateUninitializedArray<int>(entries, pinned: true);
            split.Offsets = GC.AllocateUninitializedArray<byte>(entries, pinned: true);
        }
        fixed (sbyte* x = xq.Codes)
        fixed (int* magnitudes = split.Magnitudes)
        fixed (byte* offsets = split.Offsets)
            SplitSigns(x, xq.Stride, xq.Tokens, slices / 2, magnitudes, offsets);
        return split;
    }

    // Four row blocks per sign-variant tile (two per pair tile): a thread's share starts on a multiple of four blocks.
    private protected override int RowBlock => VariantBlocks * Int8RowBlocks.BlockRows;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private protected override void MultiplyRows(Int8RowMatrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        if (xq.Tokens == 1)
        {
            _streaming.MultiplyRowsOnCallingThread(w, xq, y, rowBegin, rowEnd);
            return;
        }
        Int8RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        if (UsesVariants(blocks, xq.Tokens))
        {
            // PrepareActivations made the split for this call on the calling thread
            var split = callState as SignSplit ?? throw new InvalidOperationException("No sign split was prepared for this call.");
            MultiplyRowsByVariants(w, blocks, xq, split, y, rowBegin, rowEnd);
            return;
        }
        int* acc = stackalloc int[TokenTile * 2 * Int8RowBlocks.BlockRows];
        int wideStride = blocks.Chunks * Int8RowBlocks.ChunkColumns;
        short[] wide = Scratch(ref t_wideTile, TokenTile * wideStride);
        fixed (sbyte* codes = blocks.Codes)
        fixed (float* scales = blocks.Scales)
        fixed (sbyte* x = xq.Codes)
        fixed (float* tokenScales = xq.Scales)
        fixed (short* xWide = wide)
        {
            int firstBlock = rowBegin / Int8RowBlocks.BlockRows, endBlock = (rowEnd + Int8RowBlocks.BlockRows - 1) / Int8RowBlocks.BlockRows;
            int tokens = xq.Tokens;
            for (int panel = firstBlock; panel < endBlock; panel += PanelBlocks)
            {
                int panelEnd = Math.Min(endBlock, panel + PanelBlocks);
                for (int t0 = 0; t0 < tokens; t0 += TokenTile)
                {
                    int n = Math.Min(TokenTile, tokens - t0);
                    for (int j = 0; j < n; j++) Widen(x + (nint)(t0 + j) * xq.Stride, xWide + (nint)j * wideStride, wideStride);
                    for (int b = panel; b < panelEnd; b += 2)
                    {
                        // An odd last block pairs with itself; only its own 8 rows are stored.
                        int upper = b + 1 < panelEnd ? b + 1 : b;
                        PairSums(codes + (nint)b * blocks.Chunks * 32, codes + (nint)upper * blocks.Chunks * 32, blocks.Chunks, xWide, wideStride, n, acc);
                        Vector512<float> rowScales = X86.Avx512F.InsertVector256(
                            X86.Avx.LoadVector256(scales + b * Int8RowBlocks.BlockRows).ToVector512(), X86.Avx.LoadVector256(scales + upper * Int8RowBlocks.BlockRows), 1);
                        int row = b * Int8RowBlocks.BlockRows;
                        int rows = Math.Min(upper == b ? Int8RowBlocks.BlockRows : 2 * Int8RowBlocks.BlockRows, w.Rows - row);
                        for (int j = 0; j < n; j++)
                        {
                            // y = s_x · s_w · acc, the scalar twin's order
                            Vector512<float> values = Vector512.Create(tokenScales[t0 + j])
                                * (rowScales * X86.Avx512F.ConvertToVector512Single(Vector512.Load(acc + j * 2 * Int8RowBlocks.BlockRows)));
                            float* yRow = y + (nint)(t0 + j) * w.Rows + row;
                            if (rows == 2 * Int8RowBlocks.BlockRows) values.Store(yRow);
                            else for (int i = 0; i < rows; i++) yRow[i] = values.GetElement(i);
                        }
                    }
                }
            }
        }
    }

    // This thread's int16 copy of one token tile's activation codes, (TokenTile, Chunks · 4).
    [ThreadStatic] private static short[]? t_wideTile;

    // wide[c] = codes[c] for c < count (sign-extended; count is a multiple of 4, the codes zero padded to it).
    private static void Widen(sbyte* codes, short* wide, int count)
    {
        int c = 0;
        for (; c + 32 <= count; c += 32) X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(codes + c)).Store(wide + c);
        for (; c < count; c++) wide[c] = codes[c];
    }

    private static int SignPattern(int s)
    {
        int pattern = 0;
        for (int c = 0; c < Int8RowBlocks.ChunkColumns; c++) pattern |= ((s >> c & 1) != 0 ? 0xFF : 0x00) << (8 * c);
        return pattern;
    }

    [ThreadStatic] private static int[]? t_tileSums;
    [ThreadStatic] private static sbyte[]? t_variantTable;

    // This thread's pinned scratch in `slot`, grown on demand to at least `length` elements.
    internal static T[] Scratch<T>(ref T[]? slot, int length) where T : unmanaged
    {
        T[]? array = slot;
        if (array is null || array.Length < length) slot = array = GC.AllocateUninitializedArray<T>(length, pinned: true);
        return array;
    }

    internal static T* Align64<T>(T* p) where T : unmanaged => (T*)(((nint)p + 63) & ~(nint)63);

    /// <summary>
    /// The sign-variant route, weights without −128 and ≥ <see cref="VariantMinTokens"/> tokens:
    /// <c>w · x = |x| · (sign(x) · w)</c> per column, so with the 16 sign flips of every 4-column weight chunk
    /// precomputed (per 32-row tile and 8-chunk K slice) one <c>vpmaddubsw(|x|, table[k, s])</c> + <c>vpmaddwd(·, 1)</c>
    /// + <c>vpaddd</c> does 64 multiply-adds with no per-token sign fix: s = the sign pattern of the token's 4 activation
    /// codes. Exact: |x| ≤ 127, |w| ≤ 127, so a pair sums to ≤ 32258 in int16; int32 lane i = row i's 4-column sum.
    /// </summary>
    private static void MultiplyRowsByVariants(Int8RowMatrix w, Int8RowBlocks blocks, QuantizedActivations xq, SignSplit split, float* y, int rowBegin, int rowEnd)
    {
        const int tileRows = VariantBlocks * Int8RowBlocks.BlockRows;
        int tokens = xq.Tokens, chunks = blocks.Chunks;
        int[] sumArray = Scratch(ref t_tileSums, tokens * tileRows + 16);
        sbyte[] tableArray = Scratch(ref t_variantTable, SliceChunks * Variants * VariantBytes + 64);
        float* tileScales = stackalloc float[tileRows];
        fixed (sbyte* codes = blocks.Codes)
        fixed (float* scales = blocks.Scales)
        fixed (float* tokenScales = xq.Scales)
        fixed (int* magnitudes = split.Magnitudes)
        fixed (byte* offsets = split.Offsets)
        fixed (int* sumBase = sumArray)
        fixed (sbyte* tableBase = tableArray)
        fixed (int* patterns = s_signPatterns)
        {
            // (tokens, tileRows) int32 sums of one row tile, and the slice table (SliceChunks, Variants, VariantBytes), 64-byte aligned
            int* sums = Align64(sumBase);
            sbyte* table = Align64(tableBase);
            for (int row = rowBegin; row < rowEnd; row += tileRows)
            {
                int firstBlock = row / Int8RowBlocks.BlockRows;
                for (int k0 = 0; k0 < chunks; k0 += SliceChunks)
                {
                    int length = Math.Min(SliceChunks, chunks - k0);
                    BuildVariants(codes, blocks.Blocks, chunks, firstBlock, k0, length, patterns, table);
                    nint slice = (nint)(k0 / SliceChunks) * tokens * SliceChunks;
                    int fullTiles = tokens / TokenTile, rest = tokens % TokenTile, done = fullTiles * TokenTile;
                    if (fullTiles > 0) SliceSums<EightTokens>(table, length, magnitudes + slice, offsets + slice, sums, k0 == 0, fullTiles);
                    if (rest > 0)
                        SliceSums(rest, table, length, magnitudes + slice + done * SliceChunks, offsets + slice + done * SliceChunks, sums + done * tileRows, k0 == 0);
                }
                int scaled = Math.Min(tileRows, blocks.Blocks * Int8RowBlocks.BlockRows - row);
                for (int i = 0; i < tileRows; i++) tileScales[i] = i < scaled ? scales[row + i] : 0f;
                Vector512<float> lowerScales = Vector512.Load(tileScales), upperScales = Vector512.Load(tileScales + 16);
                int rows = Math.Min(tileRows, w.Rows - row);
                for (int t = 0; t < tokens; t++)
                {
                    // y = s_x · s_w · acc, the scalar twin's order
                    Vector512<float> tokenScale = Vector512.Create(tokenScales[t]);
                    Vector512<float> lower = tokenScale * (lowerScales * X86.Avx512F.ConvertToVector512Single(Vector512.Load(sums + t * tileRows)));
                    Vector512<float> upper = tokenScale * (upperScales * X86.Avx512F.ConvertToVector512Single(Vector512.Load(sums + t * tileRows + 16)));
                    float* yRow = y + (nint)t * w.Rows + row;
                    if (rows == tileRows)
                    {
                        lower.Store(yRow);
                        upper.Store(yRow + 16);
                    }
                    else for (int i = 0; i < rows; i++) yRow[i] = i < 16 ? lower.GetElement(i) : upper.GetElement(i - 16);
                }
            }
        }
    }

    // For token t and chunk k (codes x[t, 4k .. 4k+3]): magnitudes = the 4 |codes| (one byte each), offsets = s · VariantBytes / 8
    // (one byte, scaled by 8 in the address) with bit c of s set where code c is negative; both at
    // ((k / 8) · tokens + t) · 8 + k % 8, so that a token tile's slice is contiguous. 16 chunks (64 codes, the zero
    // padding included) per step.
    internal static void SplitSigns(sbyte* x, int stride, int tokens, int groups, int* magnitudes, byte* offsets)
    {
        Vector512<uint> signBits = Vector512.Create(0x01010101u), offsetBits = Vector512.Create((uint)((Variants - 1) * VariantBytes / 8));
        for (int t = 0; t < tokens; t++)
        {
            sbyte* row = x + (nint)t * stride;
            for (int g = 0; g < groups; g++)
            {
                Vector512<sbyte> code = Vector512.Load(row + g * 64);
                Vector512<uint> magnitude = X86.Avx512BW.Abs(code).AsUInt32();
                // sign bits 7, 15, 23, 31 → bits 0, 8, 16, 24 → (× 2^24 + 2^17 + 2^10 + 2^3, partial products on distinct bits) 24..27 → · 16
                Vector128<ulong> offset = X86.Avx512F.ConvertToVector128Byte((((code.AsUInt32() >> 7) & signBits) * 0x01020408u >> 20) & offsetBits).AsUInt64();
                nint first = ((nint)(2 * g) * tokens + t) * SliceChunks, second = first + (nint)tokens * SliceChunks;
                magnitude.GetLower().Store((uint*)magnitudes + first);
                magnitude.GetUpper().Store((uint*)magnitudes + second);
                *(ulong*)(offsets + first) = offset.ToScalar();
                *(ulong*)(offsets + second) = offset.GetElement(1);
            }
        }
    }

    // table[kk, s, j] (32 bytes) = chunk k0 + kk of row block firstBlock + j with column c negated where bit c of s is set
    // (a select between the block pair and its negation, vpternlogd); blocks past the matrix are zero.
    internal static void BuildVariants(sbyte* codes, int blockCount, int chunks, int firstBlock, int k0, int length, int* patterns, sbyte* table)
    {
        for (int kk = 0; kk < length; kk++)
        {
            sbyte* chunkVariants = table + kk * Variants * VariantBytes;
            Vector512<sbyte> lower = BlockPair(codes, blockCount, chunks, firstBlock, k0 + kk), upper = BlockPair(codes, blockCount, chunks, firstBlock + 2, k0 + kk);
            Vector512<sbyte> lowerNegated = -lower, upperNegated = -upper;
            for (int s = 0; s < Variants; s++)
            {
                Vector512<sbyte> negate = Vector512.Create(patterns[s]).AsSByte();
                Vector512.ConditionalSelect(negate, lowerNegated, lower).Store(chunkVariants + s * VariantBytes);
                Vector512.ConditionalSelect(negate, upperNegated, upper).Store(chunkVariants + s * VariantBytes + 64);
            }
        }
    }

    // Chunk k of row blocks b and b + 1 (zero past the matrix) in one zmm.
    private static Vector512<sbyte> BlockPair(sbyte* codes, int blockCount, int chunks, int b, int k) => Vector512.Create(
        b < blockCount ? X86.Avx.LoadVector256(codes + ((nint)b * chunks + k) * 32) : Vector256<sbyte>.Zero,
        b + 1 < blockCount ? X86.Avx.LoadVector256(codes + ((nint)(b + 1) * chunks + k) * 32) : Vector256<sbyte>.Zero);

    /// <summary>sums[j · 32 + i] (+)= Σ_{kk &lt; length} row i of vpmaddwd(vpmaddubsw(|x[j, kk]|, table[kk, s[j, kk]]), 1) for n ≤ 8 tokens.</summary>
    private static void SliceSums(int n, sbyte* table, int length, int* magnitudes, byte* offsets, int* sums, bool first)
    {
        switch (n)
        {
            case 8: SliceSums<EightTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            case 7: SliceSums<SevenTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            case 6: SliceSums<SixTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            case 5: SliceSums<FiveTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            case 4: SliceSums<FourTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            case 3: SliceSums<ThreeTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            case 2: SliceSums<TwoTokens>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
            default: SliceSums<OneToken>(table, length, magnitudes, offsets, sums, first, tiles: 1); break;
        }
    }

    // Token j's accumulators: lanes of `lower` = rows 0..15 (blocks 0, 1), of `upper` = rows 16..31 (blocks 2, 3); `tiles`
    // consecutive token tiles of N (one call per slice for all full tiles).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SliceSums<N>(sbyte* table, int length, int* magnitudes, byte* offsets, int* sums, bool first, int tiles) where N : struct, ITokenCount
    {
        const int tileRows = VariantBlocks * Int8RowBlocks.BlockRows;
        for (int tile = 0; tile < tiles; tile++, magnitudes += TokenTile * SliceChunks, offsets += TokenTile * SliceChunks, sums += TokenTile * tileRows)
        {
            Vector512<int> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default, l5 = default, l6 = default, l7 = default;
            Vector512<int> u0 = default, u1 = default, u2 = default, u3 = default, u4 = default, u5 = default, u6 = default, u7 = default;
            if (!first)
            {
                LoadSums(out l0, out u0, sums);
                if (N.Value > 1) LoadSums(out l1, out u1, sums + tileRows);
                if (N.Value > 2) LoadSums(out l2, out u2, sums + 2 * tileRows);
                if (N.Value > 3) LoadSums(out l3, out u3, sums + 3 * tileRows);
                if (N.Value > 4) LoadSums(out l4, out u4, sums + 4 * tileRows);
                if (N.Value > 5) LoadSums(out l5, out u5, sums + 5 * tileRows);
                if (N.Value > 6) LoadSums(out l6, out u6, sums + 6 * tileRows);
                if (N.Value > 7) LoadSums(out l7, out u7, sums + 7 * tileRows);
            }
            Vector512<short> ones = Vector512<short>.One;
            for (int kk = 0; kk < length; kk++)
            {
                sbyte* chunkVariants = table + kk * Variants * VariantBytes;
                int* m = magnitudes + kk;
                byte* o = offsets + kk;
                AddVariantProducts(ref l0, ref u0, chunkVariants, m, o, ones);
                if (N.Value > 1) AddVariantProducts(ref l1, ref u1, chunkVariants, m + SliceChunks, o + SliceChunks, ones);
                if (N.Value > 2) AddVariantProducts(ref l2, ref u2, chunkVariants, m + 2 * SliceChunks, o + 2 * SliceChunks, ones);
                if (N.Value > 3) AddVariantProducts(ref l3, ref u3, chunkVariants, m + 3 * SliceChunks, o + 3 * SliceChunks, ones);
                if (N.Value > 4) AddVariantProducts(ref l4, ref u4, chunkVariants, m + 4 * SliceChunks, o + 4 * SliceChunks, ones);
                if (N.Value > 5) AddVariantProducts(ref l5, ref u5, chunkVariants, m + 5 * SliceChunks, o + 5 * SliceChunks, ones);
                if (N.Value > 6) AddVariantProducts(ref l6, ref u6, chunkVariants, m + 6 * SliceChunks, o + 6 * SliceChunks, ones);
                if (N.Value > 7) AddVariantProducts(ref l7, ref u7, chunkVariants, m + 7 * SliceChunks, o + 7 * SliceChunks, ones);
            }
            StoreSums(l0, u0, sums);
            if (N.Value > 1) StoreSums(l1, u1, sums + tileRows);
            if (N.Value > 2) StoreSums(l2, u2, sums + 2 * tileRows);
            if (N.Value > 3) StoreSums(l3, u3, sums + 3 * tileRows);
            if (N.Value > 4) StoreSums(l4, u4, sums + 4 * tileRows);
            if (N.Value > 5) StoreSums(l5, u5, sums + 5 * tileRows);
            if (N.Value > 6) StoreSums(l6, u6, sums + 6 * tileRows);
            if (N.Value > 7) StoreSums(l7, u7, sums + 7 * tileRows);
        }
    }

    // lower, upper += vpmaddwd(vpmaddubsw(broadcast |x| (4 bytes at m), the variant at 8 · *o), 1) for the tile's two zmm of rows.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AddVariantProducts(ref Vector512<int> lower, ref Vector512<int> upper, sbyte* chunkVariants, int* m, byte* o, Vector512<short> ones)
    {
        Vector512<byte> magnitude = Vector512.Create(*m).AsByte();
        sbyte* variant = chunkVariants + (nint)(*o) * 8;
        lower += X86.Avx512BW.MultiplyAddAdjacent(X86.Avx512BW.MultiplyAddAdjacent(magnitude, Vector512.Load(variant)), ones);
        upper += X86.Avx512BW.MultiplyAddAdjacent(X86.Avx512BW.MultiplyAddAdjacent(magnitude, Vector512.Load(variant + 64)), ones);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadSums(out Vector512<int> lower, out Vector512<int> upper, int* sums)
    {
        lower = Vector512.Load(sums);
        upper = Vector512.Load(sums + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreSums(Vector512<int> lower, Vector512<int> upper, int* sums)
    {
        lower.Store(sums);
        upper.Store(sums + 16);
    }

    /// <summary>acc[j · 16 + i] = Σ_c w_q[row i of (lower, upper), c] · x[j, c] for n ≤ 8 tokens of int16 codes (stride xStride).</summary>
    private static void PairSums(sbyte* lower, sbyte* upper, int chunks, short* x, nint xStride, int n, int* acc)
    {
        switch (n)
        {
            case 8: PairSums<EightTokens>(lower, upper, chunks, x, xStride, acc); break;
            case 7: PairSums<SevenTokens>(lower, upper, chunks, x, xStride, acc); break;
            case 6: PairSums<SixTokens>(lower, upper, chunks, x, xStride, acc); break;
            case 5: PairSums<FiveTokens>(lower, upper, chunks, x, xStride, acc); break;
            case 4: PairSums<FourTokens>(lower, upper, chunks, x, xStride, acc); break;
            case 3: PairSums<ThreeTokens>(lower, upper, chunks, x, xStride, acc); break;
            case 2: PairSums<TwoTokens>(lower, upper, chunks, x, xStride, acc); break;
            default: PairSums<OneToken>(lower, upper, chunks, x, xStride, acc); break;
        }
    }

    // Per block, int32 lanes 2i and 2i + 1 hold Σ_k (w[i, 4k] · x[4k] + w[i, 4k+1] · x[4k+1]) and the same over columns
    // 4k+2, 4k+3 (vpmaddwd of the sign-extended chunk and the broadcast 4 int16 codes); acc[j, i] is their sum.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairSums<N>(sbyte* lower, sbyte* upper, int chunks, short* x, nint xStride, int* acc) where N : struct, ITokenCount
    {
        Vector512<int> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default, l5 = default, l6 = default, l7 = default;
        Vector512<int> u0 = default, u1 = default, u2 = default, u3 = default, u4 = default, u5 = default, u6 = default, u7 = default;
        // Two chunks per step, their products summed before they meet the accumulator (acc += p_k + p_k+1): the same
        // count of vpaddd, but Zen 4 then keeps its two multiply pipes busier (faster than one add per product: docs/kernels.md).
        int k = 0;
        for (; k + 1 < chunks; k += 2)
        {
            Vector512<short> wl0 = X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(lower + (nint)k * 32));
            Vector512<short> wu0 = X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(upper + (nint)k * 32));
            Vector512<short> wl1 = X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(lower + (nint)k * 32 + 32));
            Vector512<short> wu1 = X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(upper + (nint)k * 32 + 32));
            short* xk = x + k * Int8RowBlocks.ChunkColumns;
            AddChunkPairProducts(ref l0, ref u0, wl0, wu0, wl1, wu1, xk);
            if (N.Value > 1) AddChunkPairProducts(ref l1, ref u1, wl0, wu0, wl1, wu1, xk + xStride);
            if (N.Value > 2) AddChunkPairProducts(ref l2, ref u2, wl0, wu0, wl1, wu1, xk + 2 * xStride);
            if (N.Value > 3) AddChunkPairProducts(ref l3, ref u3, wl0, wu0, wl1, wu1, xk + 3 * xStride);
            if (N.Value > 4) AddChunkPairProducts(ref l4, ref u4, wl0, wu0, wl1, wu1, xk + 4 * xStride);
            if (N.Value > 5) AddChunkPairProducts(ref l5, ref u5, wl0, wu0, wl1, wu1, xk + 5 * xStride);
            if (N.Value > 6) AddChunkPairProducts(ref l6, ref u6, wl0, wu0, wl1, wu1, xk + 6 * xStride);
            if (N.Value > 7) AddChunkPairProducts(ref l7, ref u7, wl0, wu0, wl1, wu1, xk + 7 * xStride);
        }
        if (k < chunks)
        {
            Vector512<short> wl = X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(lower + (nint)k * 32));
            Vector512<short> wu = X86.Avx512BW.ConvertToVector512Int16(X86.Avx.LoadVector256(upper + (nint)k * 32));
            short* xk = x + k * Int8RowBlocks.ChunkColumns;
            AddChunkProducts(ref l0, ref u0, wl, wu, xk);
            if (N.Value > 1) AddChunkProducts(ref l1, ref u1, wl, wu, xk + xStride);
            if (N.Value > 2) AddChunkProducts(ref l2, ref u2, wl, wu, xk + 2 * xStride);
            if (N.Value > 3) AddChunkProducts(ref l3, ref u3, wl, wu, xk + 3 * xStride);
            if (N.Value > 4) AddChunkProducts(ref l4, ref u4, wl, wu, xk + 4 * xStride);
            if (N.Value > 5) AddChunkProducts(ref l5, ref u5, wl, wu, xk + 5 * xStride);
            if (N.Value > 6) AddChunkProducts(ref l6, ref u6, wl, wu, xk + 6 * xStride);
            if (N.Value > 7) AddChunkProducts(ref l7, ref u7, wl, wu, xk + 7 * xStride);
        }
        StoreRowSums(l0, u0, acc);
        if (N.Value > 1) StoreRowSums(l1, u1, acc + 16);
        if (N.Value > 2) StoreRowSums(l2, u2, acc + 32);
        if (N.Value > 3) StoreRowSums(l3, u3, acc + 48);
        if (N.Value > 4) StoreRowSums(l4, u4, acc + 64);
        if (N.Value > 5) StoreRowSums(l5, u5, acc + 80);
        if (N.Value > 6) StoreRowSums(l6, u6, acc + 96);
        if (N.Value > 7) StoreRowSums(l7, u7, acc + 112);
    }

    // lower, upper += vpmaddwd(w, broadcast of the 4 int16 codes at x): two column pairs per row.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddChunkProducts(ref Vector512<int> lower, ref Vector512<int> upper, Vector512<short> wLower, Vector512<short> wUpper, short* x)
    {
        Vector512<short> codes = Vector512.Create(*(long*)x).AsInt16();
        lower += X86.Avx512BW.MultiplyAddAdjacent(wLower, codes);
        upper += X86.Avx512BW.MultiplyAddAdjacent(wUpper, codes);
    }

    // lower, upper += vpmaddwd(w0, codes at x) + vpmaddwd(w1, codes at x + 4): chunks k and k + 1 of one token.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddChunkPairProducts(ref Vector512<int> lower, ref Vector512<int> upper, Vector512<short> wLower0, Vector512<short> wUpper0,
        Vector512<short> wLower1, Vector512<short> wUpper1, short* x)
    {
        Vector512<short> codes0 = Vector512.Create(*(long*)x).AsInt16();
        Vector512<short> codes1 = Vector512.Create(*(long*)(x + Int8RowBlocks.ChunkColumns)).AsInt16();
        lower += X86.Avx512BW.MultiplyAddAdjacent(wLower0, codes0) + X86.Avx512BW.MultiplyAddAdjacent(wLower1, codes1);
        upper += X86.Avx512BW.MultiplyAddAdjacent(wUpper0, codes0) + X86.Avx512BW.MultiplyAddAdjacent(wUpper1, codes1);
    }

    // acc[i] = lanes 2i + 2i+1 of lower (rows 0..7), then of upper (rows 8..15): two vpermt2d and one add.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRowSums(Vector512<int> lower, Vector512<int> upper, int* acc)
    {
        Vector512<int> even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        Vector512<int> odd = even + Vector512<int>.One;
        (X86.Avx512F.PermuteVar16x32x2(lower, even, upper) + X86.Avx512F.PermuteVar16x32x2(lower, odd, upper)).Store(acc);
    }
}
