using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 kernel for <see cref="SuperBlockInt4Matrix"/>, twin of <see cref="Scalar.ScalarSuperBlockInt4Kernel"/>: one ymm holds
/// chunk k (8 columns) of one row block, 8 rows with one int32 lane each; the arithmetic of
/// <see cref="Avx512.Avx512SuperBlockInt4Kernel"/> at half the width:
/// <c>I = Σ_s sc_s · Σ_{c∈s} u(q) · x_q</c>, <c>M = Σ_s c_s · S_s</c>, per super-block <c>f = fma(I, d · s_x,b, f)</c>,
/// <c>f = fma(−M, e · s_x,b, f)</c>, <c>y = s_x · f</c> (s_x,b the activation scale of the super-block, 1 with per-token
/// scales; equal to the scalar twin bit for bit).
/// </summary>
/// <remarks>
/// Plain codes: int16 sums over a sub-block (≤ 30480), <c>vpmaddwd</c> by the duplicated sub-block scales. Codebook codes:
/// <c>vpshufb</c> gives |K[q]| and K[q], <c>vpmaddubsw(|K|, vpsignb(x, K))</c> (pairs ≤ 32258) widened per chunk half.
/// A tile is one row block × up to 4 tokens; GEMM walks panels of 4 block pairs × token tiles, GEMV streams each block
/// once with prefetch one page ahead.
/// </remarks>
internal sealed unsafe class Avx2SuperBlockInt4Kernel : SuperBlockInt4MatMulKernel
{
    /// <summary>Tokens that share one unpack of a weight chunk.</summary>
    private const int TokenTile = 4;

    /// <summary>Block pairs whose weights stay in L2 while every token tile passes over them.</summary>
    private const int PanelPairs = 4;

    /// <summary>How far ahead (bytes) the one-token stream prefetches its weight lines.</summary>
    private const int PrefetchBytes = 4096;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 and FMA enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported && X86.Fma.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2SuperBlockInt4Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => $"sbw4a{ActivationBits}-avx2";

    private protected override void MultiplyPairs(in SuperBlockInt4Call call, int firstPair, int endPair)
    {
        if (call.Matrix.Scheme.HasCodebook) BySubBlock<CodebookCodes>(call, firstPair, endPair);
        else BySubBlock<PlainCodes>(call, firstPair, endPair);
    }

    private static void BySubBlock<TCodes>(in SuperBlockInt4Call call, int firstPair, int endPair) where TCodes : struct, ICodes
    {
        if (call.Matrix.Scheme.SubBlockSize == 16) ByCorrection<TCodes, TwoChunks>(call, firstPair, endPair);
        else ByCorrection<TCodes, FourChunks>(call, firstPair, endPair);
    }

    private static void ByCorrection<TCodes, TSub>(in SuperBlockInt4Call call, int firstPair, int endPair)
        where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks
    {
        if (call.Matrix.Scheme.HasCorrection) Run<TCodes, TSub, WithCorrection>(call, firstPair, endPair);
        else Run<TCodes, TSub, NoCorrection>(call, firstPair, endPair);
    }

    private static void Run<TCodes, TSub, TCorr>(in SuperBlockInt4Call call, int firstPair, int endPair)
        where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm
    {
        Vector128<sbyte> codebook = call.Codebook is { } k ? Vector128.Create(k) : default;
        Vector256<sbyte> values = Vector256.Create(codebook, codebook);
        Vector256<byte> magnitudes = Vector256.Abs(values).AsByte();
        int blocks = (call.Rows + SuperBlockInt4Matrix.BlockRows - 1) / SuperBlockInt4Matrix.BlockRows;
        int firstBlock = 2 * firstPair, endBlock = Math.Min(blocks, 2 * endPair);
        for (int panel = firstBlock; panel < endBlock; panel += 2 * PanelPairs)
        {
            int panelEnd = Math.Min(endBlock, panel + 2 * PanelPairs);
            for (int t0 = 0; t0 < call.Tokens; t0 += TokenTile)
            {
                int n = Math.Min(TokenTile, call.Tokens - t0);
                for (int b = panel; b < panelEnd; b++)
                    switch (n)
                    {
                        case 4: Tile<TCodes, TSub, TCorr, FourTokens>(call, b, t0, values, magnitudes); break;
                        case 3: Tile<TCodes, TSub, TCorr, ThreeTokens>(call, b, t0, values, magnitudes); break;
                        case 2: Tile<TCodes, TSub, TCorr, TwoTokens>(call, b, t0, values, magnitudes); break;
                        default: Tile<TCodes, TSub, TCorr, OneToken>(call, b, t0, values, magnitudes); break;
                    }
            }
        }
    }

    // y[t, r] = s_x[t] · f[t, r] for the 8 rows of row block `block` and the N tokens t0.., f as in the class summary.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TCodes, TSub, TCorr, N>(in SuperBlockInt4Call w, int block, int t0, Vector256<sbyte> values, Vector256<byte> magnitudes)
        where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm where N : struct, ITokenCount
    {
        const int PairRows = SuperBlockInt4Matrix.PairRows, BlockRows = SuperBlockInt4Matrix.BlockRows;
        const int ChunkStride = SuperBlockInt4Matrix.ChunkStride, ChunkColumns = SuperBlockInt4Matrix.ChunkColumns;
        Vector256<byte> lowNibbles = Vector256.Create((byte)0x0F);
        int pair = block >> 1, upper = block & 1;
        byte* chunks = w.Packed + (nint)pair * w.Chunks * ChunkStride + upper * 32;               // (chunks, 64): this block's 32
        sbyte* subScales = w.SubScales + (nint)pair * w.SubBlocks * PairRows + upper * BlockRows; // (sub-blocks, 16): this block's 8
        nint superAt = (nint)pair * w.SuperBlocks * PairRows + upper * BlockRows;
        ushort* d = w.SuperScales + superAt;                                                      // (super-blocks, 16)
        ushort* e = w.CorrectionScales + superAt;
        sbyte* corrections = w.Corrections + ((nint)pair * w.SuperBlocks * PairRows * w.CorrectionPairs + upper * BlockRows) * 2; // (super-blocks, pairs, 16, 2)
        sbyte* x0 = w.Codes + (nint)t0 * w.CodeStride;
        nint xs = w.CodeStride;
        short* s0 = w.SubSums + (nint)t0 * w.SubSumStride;
        nint ss = w.SubSumStride;
        float* g0 = w.GroupScales + (nint)t0 * w.GroupScaleStride;
        nint gs = w.GroupScaleStride;
        int perSuper = w.SubBlocksPerSuperBlock, correctionPairs = w.CorrectionPairs;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int b = 0, s = 0; b < w.SuperBlocks; b++)
        {
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int sEnd = s + perSuper; s < sEnd; s++)
            {
                byte* sub = chunks + (nint)s * TSub.Value * ChunkStride;
                if (N.Value == 1)
                    for (int line = 0; line < TSub.Value; line++) X86.Sse.Prefetch0(sub + PrefetchBytes + line * ChunkStride);
                Vector256<short> sc = ScalePairs(subScales + s * PairRows);
                Vector256<short> h0 = default, h1 = default, h2 = default, h3 = default;
                for (int k = 0; k < TSub.Value; k++)
                {
                    Vector256<byte> pairs = X86.Avx.LoadVector256(sub + k * ChunkStride);
                    Vector256<byte> low = pairs & lowNibbles;
                    Vector256<byte> high = X86.Avx2.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
                    Vector256<byte> lowWeights = TCodes.Weights(low, magnitudes), highWeights = TCodes.Weights(high, magnitudes);
                    Vector256<sbyte> lowValues = TCodes.Values(low, values), highValues = TCodes.Values(high, values);
                    sbyte* x = x0 + (s * TSub.Value + k) * ChunkColumns;
                    if (TCodes.WidenEachChunk)
                    {
                        i0 += ChunkSum<TCodes>(lowWeights, lowValues, highWeights, highValues, x, sc);
                        if (N.Value > 1) i1 += ChunkSum<TCodes>(lowWeights, lowValues, highWeights, highValues, x + xs, sc);
                        if (N.Value > 2) i2 += ChunkSum<TCodes>(lowWeights, lowValues, highWeights, highValues, x + 2 * xs, sc);
                        if (N.Value > 3) i3 += ChunkSum<TCodes>(lowWeights, lowValues, highWeights, highValues, x + 3 * xs, sc);
                        continue;
                    }
                    h0 += ChunkProducts<TCodes>(lowWeights, lowValues, highWeights, highValues, x);
                    if (N.Value > 1) h1 += ChunkProducts<TCodes>(lowWeights, lowValues, highWeights, highValues, x + xs);
                    if (N.Value > 2) h2 += ChunkProducts<TCodes>(lowWeights, lowValues, highWeights, highValues, x + 2 * xs);
                    if (N.Value > 3) h3 += ChunkProducts<TCodes>(lowWeights, lowValues, highWeights, highValues, x + 3 * xs);
                }
                if (TCodes.WidenEachChunk) continue;
                i0 += X86.Avx2.MultiplyAddAdjacent(h0, sc);
                if (N.Value > 1) i1 += X86.Avx2.MultiplyAddAdjacent(h1, sc);
                if (N.Value > 2) i2 += X86.Avx2.MultiplyAddAdjacent(h2, sc);
                if (N.Value > 3) i3 += X86.Avx2.MultiplyAddAdjacent(h3, sc);
            }
            // the super-block's factors times each token's activation scale of the super-block (1 with per-token scales: exact)
            Vector256<float> dv = HalfBits.Widen(X86.Avx2.ConvertToVector256Int32(d + b * PairRows));
            Vector256<float> sx0 = Vector256.Create(g0[b]), sx1 = default, sx2 = default, sx3 = default;
            if (N.Value > 1) sx1 = Vector256.Create(g0[gs + b]);
            if (N.Value > 2) sx2 = Vector256.Create(g0[2 * gs + b]);
            if (N.Value > 3) sx3 = Vector256.Create(g0[3 * gs + b]);
            f0 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(i0), dv * sx0, f0);
            if (N.Value > 1) f1 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(i1), dv * sx1, f1);
            if (N.Value > 2) f2 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(i2), dv * sx2, f2);
            if (N.Value > 3) f3 = X86.Fma.MultiplyAdd(X86.Avx.ConvertToVector256Single(i3), dv * sx3, f3);
            if (!TCorr.Present) continue;
            Vector256<float> ev = HalfBits.Widen(X86.Avx2.ConvertToVector256Int32(e + b * PairRows));
            sbyte* c = corrections + (nint)b * correctionPairs * 2 * PairRows;
            int firstSub = b * perSuper;
            f0 = CorrectionEpilogue(c, correctionPairs, s0 + firstSub, ev * sx0, f0);
            if (N.Value > 1) f1 = CorrectionEpilogue(c, correctionPairs, s0 + ss + firstSub, ev * sx1, f1);
            if (N.Value > 2) f2 = CorrectionEpilogue(c, correctionPairs, s0 + 2 * ss + firstSub, ev * sx2, f2);
            if (N.Value > 3) f3 = CorrectionEpilogue(c, correctionPairs, s0 + 3 * ss + firstSub, ev * sx3, f3);
        }
        int row = block * BlockRows, rows = Math.Min(BlockRows, w.Rows - row);
        float* y = w.Y + (nint)t0 * w.Rows + row;
        StoreRows(f0 * w.TokenScales[t0], y, rows);
        if (N.Value > 1) StoreRows(f1 * w.TokenScales[t0 + 1], y + w.Rows, rows);
        if (N.Value > 2) StoreRows(f2 * w.TokenScales[t0 + 2], y + 2 * (nint)w.Rows, rows);
        if (N.Value > 3) StoreRows(f3 * w.TokenScales[t0 + 3], y + 3 * (nint)w.Rows, rows);
    }

    // int16 lanes: Σ u(q) · x_q over one chunk of 8 rows, columns 0..3 (low nibbles) plus 4..7 (high).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ChunkProducts<TCodes>(Vector256<byte> lowWeights, Vector256<sbyte> lowValues, Vector256<byte> highWeights, Vector256<sbyte> highValues, sbyte* x)
        where TCodes : struct, ICodes =>
        TCodes.Products(lowWeights, lowValues, Vector256.Create(*(int*)x).AsSByte()) + TCodes.Products(highWeights, highValues, Vector256.Create(*(int*)(x + 4)).AsSByte());

    // int32 lanes: sc · Σ u(q) · x_q over one chunk, each half widened on its own (codebook pairs reach 32258).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ChunkSum<TCodes>(Vector256<byte> lowWeights, Vector256<sbyte> lowValues, Vector256<byte> highWeights, Vector256<sbyte> highValues, sbyte* x, Vector256<short> sc)
        where TCodes : struct, ICodes =>
        X86.Avx2.MultiplyAddAdjacent(TCodes.Products(lowWeights, lowValues, Vector256.Create(*(int*)x).AsSByte()), sc)
        + X86.Avx2.MultiplyAddAdjacent(TCodes.Products(highWeights, highValues, Vector256.Create(*(int*)(x + 4)).AsSByte()), sc);

    // f − e · M, M = Σ_j c_{2j} · S_{2j} + c_{2j+1} · S_{2j+1} per row lane (exact int32), one rounding.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> CorrectionEpilogue(sbyte* corrections, int pairs, short* sums, Vector256<float> e, Vector256<float> f)
    {
        Vector256<int> m = default;
        for (int j = 0; j < pairs; j++)
            m += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.ConvertToVector256Int16(corrections + j * 2 * SuperBlockInt4Matrix.PairRows),
                Vector256.Create(*(int*)(sums + 2 * j)).AsInt16());
        return X86.Fma.MultiplyAddNegated(X86.Avx.ConvertToVector256Single(m), e, f);
    }

    // int16 lanes (sc_i, sc_i) for row lane i from the 8 sub-block scales at `scales`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ScalePairs(sbyte* scales)
    {
        Vector256<byte> lowHalfTwice = Vector256.Create(
            Vector128.Create((byte)0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13),
            Vector128.Create((byte)0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13));
        return X86.Avx2.Shuffle(X86.Avx2.ConvertToVector256Int32(scales).AsByte(), lowHalfTwice).AsInt16();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector256<float> values, float* y, int rows)
    {
        if (rows == SuperBlockInt4Matrix.BlockRows)
        {
            X86.Avx.Store(y, values);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = values.GetElement(i);
    }

    /// <summary>How a chunk's unpacked nibbles become <c>vpmaddubsw</c> operands.</summary>
    private interface ICodes
    {
        /// <summary>Whether products are widened (by the scales) per chunk instead of summed in int16 over the sub-block.</summary>
        static abstract bool WidenEachChunk { get; }

        /// <summary>The unsigned weight bytes for nibbles 0..15 per byte.</summary>
        static abstract Vector256<byte> Weights(Vector256<byte> nibbles, Vector256<byte> magnitudes);

        /// <summary>The signed weight values (whose signs <c>vpsignb</c> moves onto x).</summary>
        static abstract Vector256<sbyte> Values(Vector256<byte> nibbles, Vector256<sbyte> values);

        /// <summary>int16 pair sums of weight value · x.</summary>
        static abstract Vector256<short> Products(Vector256<byte> weights, Vector256<sbyte> values, Vector256<sbyte> x);
    }

    /// <summary>Codes are the values (0..15).</summary>
    private readonly struct PlainCodes : ICodes
    {
        public static bool WidenEachChunk => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Weights(Vector256<byte> nibbles, Vector256<byte> magnitudes) => nibbles;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Values(Vector256<byte> nibbles, Vector256<sbyte> values) => default;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<short> Products(Vector256<byte> weights, Vector256<sbyte> values, Vector256<sbyte> x) =>
            X86.Avx2.MultiplyAddAdjacent(weights, x);
    }

    /// <summary>Codes index a 16-entry codebook K: |K[q]| · sign(K[q]) · x.</summary>
    private readonly struct CodebookCodes : ICodes
    {
        public static bool WidenEachChunk => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Weights(Vector256<byte> nibbles, Vector256<byte> magnitudes) => X86.Avx2.Shuffle(magnitudes, nibbles);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Values(Vector256<byte> nibbles, Vector256<sbyte> values) => X86.Avx2.Shuffle(values, nibbles.AsSByte());

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<short> Products(Vector256<byte> weights, Vector256<sbyte> values, Vector256<sbyte> x) =>
            X86.Avx2.MultiplyAddAdjacent(weights, X86.Avx2.Sign(x, values));
    }
}
