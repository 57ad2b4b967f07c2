using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Formats;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx512;

/// <summary>
/// AVX-512 (F + BW) kernel for <see cref="SuperBlockInt4Matrix"/>, twin of <see cref="Scalar.ScalarSuperBlockInt4Kernel"/>:
/// one zmm holds chunk k (8 columns) of a block pair, 16 rows with one int32 lane each. Per chunk the nibbles split into
/// columns 0..3 (low) and 4..7 (high) and meet the broadcast activation codes in <c>vpmaddubsw</c>:
/// <c>I = Σ_s sc_s · Σ_{c∈s} u(q) · x_q</c> per row lane, <c>M = Σ_s c_s · S_s</c>, then per super-block
/// <c>f = fma(I, d · s_x,b, f)</c>, <c>f = fma(−M, e · s_x,b, f)</c> and <c>y = s_x · f</c> (s_x,b the activation scale of the
/// super-block, 1 with per-token scales; the scalar twin's order: equal bit for bit).
/// </summary>
/// <remarks>
/// Plain codes (0..15, unsigned): the int16 lanes sum a sub-block's products (≤ 4 chunks · 2 · 2 · 15 · 127 = 30480 &lt; 2^15),
/// then <c>vpmaddwd</c> by the sub-block scales (sc duplicated into both int16 halves of each row's lane) widens and scales in
/// one instruction. Codebook codes: <c>vpshufb</c> looks up |K[q]| and K[q] per 128-bit lane; <c>vpmaddubsw(|K|, ±x)</c> with
/// x negated where K &lt; 0 (AVX-512 has no <c>vpsignb</c>) pairs to ≤ 2 · 127 · 127 = 32258, so each chunk half is widened
/// by the scales at once. The correction: the int8 pairs (c_{2j}, c_{2j+1}) of every row sign-extended (<c>vpmovsxbw</c>)
/// against the broadcast int16 pair (S_{2j}, S_{2j+1}). A tile is one block pair × up to 8 tokens; GEMM walks panels of
/// 4 pairs × token tiles, GEMV (one token) streams the pairs once with prefetch one page ahead.
/// </remarks>
internal sealed unsafe class Avx512SuperBlockInt4Kernel : SuperBlockInt4MatMulKernel
{
    /// <summary>Tokens that share one unpack of a weight chunk.</summary>
    private const int TokenTile = 8;

    /// <summary>Block pairs whose weights stay in L2 while every token tile passes over them.</summary>
    private const int PanelPairs = 4;

    /// <summary>How far ahead (bytes) the one-token stream prefetches its weight lines (the hardware prefetcher stops at 4 KiB pages).</summary>
    private const int PrefetchBytes = 4096;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX-512 F and BW, AVX2 and FMA enabled).</summary>
    public static bool IsSupported => Avx2SuperBlockInt4Kernel.IsSupported && X86.Avx512F.IsSupported && X86.Avx512BW.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx512SuperBlockInt4Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX-512 F and BW, AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => $"sbw4a{ActivationBits}-avx512";

    private protected override void MultiplyPairs(in SuperBlockInt4Call call, int firstPair, int endPair)
    {
        SuperBlockInt4Scheme scheme = call.Matrix.Scheme;
        if (scheme.HasCodebook) BySubBlock<CodebookCodes>(call, firstPair, endPair);
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

    // Panels of PanelPairs pairs × token tiles of up to 8 (GEMM); the pairs one after another for one token (GEMV).
    private static void Run<TCodes, TSub, TCorr>(in SuperBlockInt4Call call, int firstPair, int endPair)
        where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm
    {
        Vector128<sbyte> codebook = call.Codebook is { } k ? Vector128.Create(k) : default;
        Vector256<sbyte> twice = Vector256.Create(codebook, codebook);
        Vector512<sbyte> values = Vector512.Create(twice, twice); // the codebook in every 128-bit lane (vpshufb looks up per lane)
        Vector512<byte> magnitudes = Vector512.Abs(values).AsByte();
        if (call.Tokens == 1)
        {
            for (int p = firstPair; p < endPair; p++) Stream<TCodes, TSub, TCorr>(call, p, values, magnitudes);
            return;
        }
        for (int panel = firstPair; panel < endPair; panel += PanelPairs)
        {
            int panelEnd = Math.Min(endPair, panel + PanelPairs);
            for (int t0 = 0; t0 < call.Tokens; t0 += TokenTile)
            {
                int n = Math.Min(TokenTile, call.Tokens - t0);
                for (int p = panel; p < panelEnd; p++)
                    switch (n)
                    {
                        case 8: Tile<TCodes, TSub, TCorr, EightTokens>(call, p, t0, values, magnitudes); break;
                        case 7: Tile<TCodes, TSub, TCorr, SevenTokens>(call, p, t0, values, magnitudes); break;
                        case 6: Tile<TCodes, TSub, TCorr, SixTokens>(call, p, t0, values, magnitudes); break;
                        case 5: Tile<TCodes, TSub, TCorr, FiveTokens>(call, p, t0, values, magnitudes); break;
                        case 4: Tile<TCodes, TSub, TCorr, FourTokens>(call, p, t0, values, magnitudes); break;
                        case 3: Tile<TCodes, TSub, TCorr, ThreeTokens>(call, p, t0, values, magnitudes); break;
                        case 2: Tile<TCodes, TSub, TCorr, TwoTokens>(call, p, t0, values, magnitudes); break;
                        default: Tile<TCodes, TSub, TCorr, OneToken>(call, p, t0, values, magnitudes); break;
                    }
            }
        }
    }

    // y[t, r] = s_x[t] · f[t, r] for the 16 rows of `pair` and the N tokens t0.., f over the super-blocks as in the class summary.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TCodes, TSub, TCorr, N>(in SuperBlockInt4Call w, int pair, int t0, Vector512<sbyte> values, Vector512<byte> magnitudes)
        where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm where N : struct, ITokenCount
    {
        const int PairRows = SuperBlockInt4Matrix.PairRows, ChunkStride = SuperBlockInt4Matrix.ChunkStride, ChunkColumns = SuperBlockInt4Matrix.ChunkColumns;
        Vector512<byte> lowNibbles = Vector512.Create((byte)0x0F);
        byte* chunks = w.Packed + (nint)pair * w.Chunks * ChunkStride;                         // (chunks, 64)
        sbyte* subScales = w.SubScales + (nint)pair * w.SubBlocks * PairRows;                  // (sub-blocks, 16)
        nint superAt = (nint)pair * w.SuperBlocks * PairRows;
        ushort* d = w.SuperScales + superAt;                                                    // (super-blocks, 16)
        ushort* e = w.CorrectionScales + superAt;                                               // (super-blocks, 16), with a correction
        sbyte* corrections = w.Corrections + superAt * w.CorrectionPairs * 2;                   // (super-blocks, pairs, 16, 2), with a correction
        sbyte* x0 = w.Codes + (nint)t0 * w.CodeStride;
        nint xs = w.CodeStride;
        short* s0 = w.SubSums + (nint)t0 * w.SubSumStride;
        nint ss = w.SubSumStride;
        float* g0 = w.GroupScales + (nint)t0 * w.GroupScaleStride;
        nint gs = w.GroupScaleStride;
        int perSuper = w.SubBlocksPerSuperBlock, correctionPairs = w.CorrectionPairs;
        Vector512<float> f0 = default, f1 = default, f2 = default, f3 = default, f4 = default, f5 = default, f6 = default, f7 = default;
        for (int b = 0, s = 0; b < w.SuperBlocks; b++)
        {
            Vector512<int> i0 = default, i1 = default, i2 = default, i3 = default, i4 = default, i5 = default, i6 = default, i7 = default;
            for (int sEnd = s + perSuper; s < sEnd; s++)
            {
                byte* sub = chunks + (nint)s * TSub.Value * ChunkStride;
                Vector512<short> sc = ScalePairs(subScales + s * PairRows);
                Vector512<short> h0 = default, h1 = default, h2 = default, h3 = default, h4 = default, h5 = default, h6 = default, h7 = default;
                for (int k = 0; k < TSub.Value; k++)
                {
                    Vector512<byte> pairs = Vector512.Load(sub + k * ChunkStride);
                    Vector512<byte> low = pairs & lowNibbles;
                    Vector512<byte> high = X86.Avx512BW.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
                    Vector512<byte> lowWeights = TCodes.Weights(low, magnitudes), highWeights = TCodes.Weights(high, magnitudes);
                    Vector512<sbyte> lowSigns = TCodes.Signs(low, values), highSigns = TCodes.Signs(high, values);
                    sbyte* x = x0 + (s * TSub.Value + k) * ChunkColumns;
                    if (TCodes.WidenEachChunk)
                    {
                        i0 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x, sc);
                        if (N.Value > 1) i1 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + xs, sc);
                        if (N.Value > 2) i2 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 2 * xs, sc);
                        if (N.Value > 3) i3 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 3 * xs, sc);
                        if (N.Value > 4) i4 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 4 * xs, sc);
                        if (N.Value > 5) i5 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 5 * xs, sc);
                        if (N.Value > 6) i6 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 6 * xs, sc);
                        if (N.Value > 7) i7 += ChunkSum<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 7 * xs, sc);
                        continue;
                    }
                    h0 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x);
                    if (N.Value > 1) h1 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + xs);
                    if (N.Value > 2) h2 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 2 * xs);
                    if (N.Value > 3) h3 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 3 * xs);
                    if (N.Value > 4) h4 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 4 * xs);
                    if (N.Value > 5) h5 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 5 * xs);
                    if (N.Value > 6) h6 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 6 * xs);
                    if (N.Value > 7) h7 += ChunkProducts<TCodes>(lowWeights, lowSigns, highWeights, highSigns, x + 7 * xs);
                }
                if (TCodes.WidenEachChunk) continue;
                i0 += X86.Avx512BW.MultiplyAddAdjacent(h0, sc);
                if (N.Value > 1) i1 += X86.Avx512BW.MultiplyAddAdjacent(h1, sc);
                if (N.Value > 2) i2 += X86.Avx512BW.MultiplyAddAdjacent(h2, sc);
                if (N.Value > 3) i3 += X86.Avx512BW.MultiplyAddAdjacent(h3, sc);
                if (N.Value > 4) i4 += X86.Avx512BW.MultiplyAddAdjacent(h4, sc);
                if (N.Value > 5) i5 += X86.Avx512BW.MultiplyAddAdjacent(h5, sc);
                if (N.Value > 6) i6 += X86.Avx512BW.MultiplyAddAdjacent(h6, sc);
                if (N.Value > 7) i7 += X86.Avx512BW.MultiplyAddAdjacent(h7, sc);
            }
            Vector512<float> dv = HalfBits.Widen(X86.Avx512F.ConvertToVector512Int32(Vector256.Load(d + b * PairRows)));
            // the super-block's factors times each token's activation scale of the super-block (1 with per-token scales: exact)
            Vector512<float> sx0 = Vector512.Create(g0[b]), sx1 = default, sx2 = default, sx3 = default, sx4 = default, sx5 = default, sx6 = default, sx7 = default;
            if (N.Value > 1) sx1 = Vector512.Create(g0[gs + b]);
            if (N.Value > 2) sx2 = Vector512.Create(g0[2 * gs + b]);
            if (N.Value > 3) sx3 = Vector512.Create(g0[3 * gs + b]);
            if (N.Value > 4) sx4 = Vector512.Create(g0[4 * gs + b]);
            if (N.Value > 5) sx5 = Vector512.Create(g0[5 * gs + b]);
            if (N.Value > 6) sx6 = Vector512.Create(g0[6 * gs + b]);
            if (N.Value > 7) sx7 = Vector512.Create(g0[7 * gs + b]);
            f0 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i0), dv * sx0, f0);
            if (N.Value > 1) f1 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i1), dv * sx1, f1);
            if (N.Value > 2) f2 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i2), dv * sx2, f2);
            if (N.Value > 3) f3 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i3), dv * sx3, f3);
            if (N.Value > 4) f4 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i4), dv * sx4, f4);
            if (N.Value > 5) f5 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i5), dv * sx5, f5);
            if (N.Value > 6) f6 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i6), dv * sx6, f6);
            if (N.Value > 7) f7 = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i7), dv * sx7, f7);
            if (!TCorr.Present) continue;
            Vector512<float> ev = HalfBits.Widen(X86.Avx512F.ConvertToVector512Int32(Vector256.Load(e + b * PairRows)));
            sbyte* c = corrections + (nint)b * correctionPairs * 2 * PairRows;
            int firstSub = b * perSuper;
            f0 = CorrectionEpilogue(c, correctionPairs, s0 + firstSub, ev * sx0, f0);
            if (N.Value > 1) f1 = CorrectionEpilogue(c, correctionPairs, s0 + ss + firstSub, ev * sx1, f1);
            if (N.Value > 2) f2 = CorrectionEpilogue(c, correctionPairs, s0 + 2 * ss + firstSub, ev * sx2, f2);
            if (N.Value > 3) f3 = CorrectionEpilogue(c, correctionPairs, s0 + 3 * ss + firstSub, ev * sx3, f3);
            if (N.Value > 4) f4 = CorrectionEpilogue(c, correctionPairs, s0 + 4 * ss + firstSub, ev * sx4, f4);
            if (N.Value > 5) f5 = CorrectionEpilogue(c, correctionPairs, s0 + 5 * ss + firstSub, ev * sx5, f5);
            if (N.Value > 6) f6 = CorrectionEpilogue(c, correctionPairs, s0 + 6 * ss + firstSub, ev * sx6, f6);
            if (N.Value > 7) f7 = CorrectionEpilogue(c, correctionPairs, s0 + 7 * ss + firstSub, ev * sx7, f7);
        }
        int rows = w.RowsOfPair(pair);
        float* y = w.Y + (nint)t0 * w.Rows + pair * PairRows;
        StoreRows(f0 * w.TokenScales[t0], y, rows);
        if (N.Value > 1) StoreRows(f1 * w.TokenScales[t0 + 1], y + w.Rows, rows);
        if (N.Value > 2) StoreRows(f2 * w.TokenScales[t0 + 2], y + 2 * (nint)w.Rows, rows);
        if (N.Value > 3) StoreRows(f3 * w.TokenScales[t0 + 3], y + 3 * (nint)w.Rows, rows);
        if (N.Value > 4) StoreRows(f4 * w.TokenScales[t0 + 4], y + 4 * (nint)w.Rows, rows);
        if (N.Value > 5) StoreRows(f5 * w.TokenScales[t0 + 5], y + 5 * (nint)w.Rows, rows);
        if (N.Value > 6) StoreRows(f6 * w.TokenScales[t0 + 6], y + 6 * (nint)w.Rows, rows);
        if (N.Value > 7) StoreRows(f7 * w.TokenScales[t0 + 7], y + 7 * (nint)w.Rows, rows);
    }

    // The one-token path of Tile (the same sums and epilogue, so the same outputs), the chunks of a sub-block unrolled: each
    // 64-byte line of the pair is read once, prefetched one page ahead.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Stream<TCodes, TSub, TCorr>(in SuperBlockInt4Call w, int pair, Vector512<sbyte> values, Vector512<byte> magnitudes)
        where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm
    {
        const int PairRows = SuperBlockInt4Matrix.PairRows, ChunkStride = SuperBlockInt4Matrix.ChunkStride, ChunkColumns = SuperBlockInt4Matrix.ChunkColumns;
        byte* sub = w.Packed + (nint)pair * w.Chunks * ChunkStride;   // (chunks, 64), advanced one sub-block at a time
        sbyte* scales = w.SubScales + (nint)pair * w.SubBlocks * PairRows;
        nint superAt = (nint)pair * w.SuperBlocks * PairRows;
        ushort* d = w.SuperScales + superAt;
        ushort* e = w.CorrectionScales + superAt;
        sbyte* corrections = w.Corrections + superAt * w.CorrectionPairs * 2;
        sbyte* x = w.Codes;
        short* sums = w.SubSums;
        int perSuper = w.SubBlocksPerSuperBlock, correctionPairs = w.CorrectionPairs;
        Vector512<float> f = default;
        for (int b = 0; b < w.SuperBlocks; b++)
        {
            Vector512<int> i = default;
            for (int s = 0; s < perSuper; s++, sub += TSub.Value * ChunkStride, x += TSub.Value * ChunkColumns, scales += PairRows)
            {
                X86.Sse.Prefetch0(sub + PrefetchBytes);
                X86.Sse.Prefetch0(sub + PrefetchBytes + ChunkStride);
                if (TSub.Value == 4)
                {
                    X86.Sse.Prefetch0(sub + PrefetchBytes + 2 * ChunkStride);
                    X86.Sse.Prefetch0(sub + PrefetchBytes + 3 * ChunkStride);
                }
                Vector512<short> sc = ScalePairs(scales);
                if (TCodes.WidenEachChunk)
                {
                    i += LineSum<TCodes>(sub, x, sc, values, magnitudes) + LineSum<TCodes>(sub + ChunkStride, x + ChunkColumns, sc, values, magnitudes);
                    if (TSub.Value == 4)
                        i += LineSum<TCodes>(sub + 2 * ChunkStride, x + 2 * ChunkColumns, sc, values, magnitudes)
                            + LineSum<TCodes>(sub + 3 * ChunkStride, x + 3 * ChunkColumns, sc, values, magnitudes);
                    continue;
                }
                Vector512<short> h = LineProducts<TCodes>(sub, x, values, magnitudes) + LineProducts<TCodes>(sub + ChunkStride, x + ChunkColumns, values, magnitudes);
                if (TSub.Value == 4)
                    h += LineProducts<TCodes>(sub + 2 * ChunkStride, x + 2 * ChunkColumns, values, magnitudes)
                        + LineProducts<TCodes>(sub + 3 * ChunkStride, x + 3 * ChunkColumns, values, magnitudes);
                i += X86.Avx512BW.MultiplyAddAdjacent(h, sc);
            }
            // the super-block's factors times the token's activation scale of the super-block (1 with per-token scales: exact)
            Vector512<float> sx = Vector512.Create(w.GroupScales[b]);
            f = X86.Avx512F.FusedMultiplyAdd(X86.Avx512F.ConvertToVector512Single(i),
                HalfBits.Widen(X86.Avx512F.ConvertToVector512Int32(Vector256.Load(d + b * PairRows))) * sx, f);
            if (TCorr.Present)
                f = CorrectionEpilogue(corrections + (nint)b * correctionPairs * 2 * PairRows, correctionPairs, sums + b * perSuper,
                    HalfBits.Widen(X86.Avx512F.ConvertToVector512Int32(Vector256.Load(e + b * PairRows))) * sx, f);
        }
        int rows = w.RowsOfPair(pair);
        StoreRows(f * w.TokenScales[0], w.Y + pair * PairRows, rows);
    }

    // ChunkProducts of the chunk at `chunk` (loaded and unpacked here).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> LineProducts<TCodes>(byte* chunk, sbyte* x, Vector512<sbyte> values, Vector512<byte> magnitudes) where TCodes : struct, ICodes
    {
        Vector512<byte> lowNibbles = Vector512.Create((byte)0x0F);
        Vector512<byte> pairs = Vector512.Load(chunk);
        Vector512<byte> low = pairs & lowNibbles, high = X86.Avx512BW.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
        return ChunkProducts<TCodes>(TCodes.Weights(low, magnitudes), TCodes.Signs(low, values), TCodes.Weights(high, magnitudes), TCodes.Signs(high, values), x);
    }

    // ChunkSum of the chunk at `chunk` (loaded and unpacked here).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> LineSum<TCodes>(byte* chunk, sbyte* x, Vector512<short> sc, Vector512<sbyte> values, Vector512<byte> magnitudes) where TCodes : struct, ICodes
    {
        Vector512<byte> lowNibbles = Vector512.Create((byte)0x0F);
        Vector512<byte> pairs = Vector512.Load(chunk);
        Vector512<byte> low = pairs & lowNibbles, high = X86.Avx512BW.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
        return ChunkSum<TCodes>(TCodes.Weights(low, magnitudes), TCodes.Signs(low, values), TCodes.Weights(high, magnitudes), TCodes.Signs(high, values), x, sc);
    }

    // int16 lanes: Σ u(q) · x_q over one chunk of 16 rows, columns 0..3 (low nibbles) plus 4..7 (high).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ChunkProducts<TCodes>(Vector512<byte> lowWeights, Vector512<sbyte> lowSigns, Vector512<byte> highWeights, Vector512<sbyte> highSigns, sbyte* x)
        where TCodes : struct, ICodes =>
        TCodes.Products(lowWeights, lowSigns, Vector512.Create(*(int*)x).AsSByte()) + TCodes.Products(highWeights, highSigns, Vector512.Create(*(int*)(x + 4)).AsSByte());

    // int32 lanes: sc · Σ u(q) · x_q over one chunk, each half widened on its own (codebook pairs reach 32258).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> ChunkSum<TCodes>(Vector512<byte> lowWeights, Vector512<sbyte> lowSigns, Vector512<byte> highWeights, Vector512<sbyte> highSigns, sbyte* x, Vector512<short> sc)
        where TCodes : struct, ICodes =>
        X86.Avx512BW.MultiplyAddAdjacent(TCodes.Products(lowWeights, lowSigns, Vector512.Create(*(int*)x).AsSByte()), sc)
        + X86.Avx512BW.MultiplyAddAdjacent(TCodes.Products(highWeights, highSigns, Vector512.Create(*(int*)(x + 4)).AsSByte()), sc);

    // f − e · M, M = Σ_j c_{2j} · S_{2j} + c_{2j+1} · S_{2j+1} per row lane (int32, exact), one rounding (fnmadd).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> CorrectionEpilogue(sbyte* corrections, int pairs, short* sums, Vector512<float> e, Vector512<float> f)
    {
        Vector512<int> m = default;
        for (int j = 0; j < pairs; j++)
            m += X86.Avx512BW.MultiplyAddAdjacent(X86.Avx512BW.ConvertToVector512Int16(Vector256.Load(corrections + j * 2 * SuperBlockInt4Matrix.PairRows)),
                Vector512.Create(*(int*)(sums + 2 * j)).AsInt16());
        return X86.Avx512F.FusedMultiplyAddNegated(X86.Avx512F.ConvertToVector512Single(m), e, f);
    }

    // int16 lanes (sc_i, sc_i) for row lane i from the 16 sub-block scales at `scales`: sign-extended to int32, low half copied up.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ScalePairs(sbyte* scales)
    {
        Vector128<byte> lane = Vector128.Create((byte)0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
        Vector512<byte> lowHalfTwice = Vector512.Create(Vector256.Create(lane, lane), Vector256.Create(lane, lane));
        return X86.Avx512BW.Shuffle(X86.Avx512F.ConvertToVector512Int32(Vector128.Load(scales)).AsByte(), lowHalfTwice).AsInt16();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector512<float> values, float* y, int rows)
    {
        if (rows == SuperBlockInt4Matrix.PairRows)
        {
            values.Store(y);
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
        static abstract Vector512<byte> Weights(Vector512<byte> nibbles, Vector512<byte> magnitudes);

        /// <summary>−1 in the bytes whose weight value is negative, else 0.</summary>
        static abstract Vector512<sbyte> Signs(Vector512<byte> nibbles, Vector512<sbyte> values);

        /// <summary>int16 pair sums of weight value · x.</summary>
        static abstract Vector512<short> Products(Vector512<byte> weights, Vector512<sbyte> signs, Vector512<sbyte> x);
    }

    /// <summary>Codes are the values (0..15).</summary>
    private readonly struct PlainCodes : ICodes
    {
        public static bool WidenEachChunk => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Weights(Vector512<byte> nibbles, Vector512<byte> magnitudes) => nibbles;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<sbyte> Signs(Vector512<byte> nibbles, Vector512<sbyte> values) => default;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<short> Products(Vector512<byte> weights, Vector512<sbyte> signs, Vector512<sbyte> x) =>
            X86.Avx512BW.MultiplyAddAdjacent(weights, x);
    }

    /// <summary>Codes index a 16-entry codebook K: |K[q]| · (x negated where K[q] &lt; 0).</summary>
    private readonly struct CodebookCodes : ICodes
    {
        public static bool WidenEachChunk => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Weights(Vector512<byte> nibbles, Vector512<byte> magnitudes) => X86.Avx512BW.Shuffle(magnitudes, nibbles);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<sbyte> Signs(Vector512<byte> nibbles, Vector512<sbyte> values) =>
            Vector512.LessThan(X86.Avx512BW.Shuffle(values, nibbles.AsSByte()), Vector512<sbyte>.Zero);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<short> Products(Vector512<byte> weights, Vector512<sbyte> signs, Vector512<sbyte> x) =>
            X86.Avx512BW.MultiplyAddAdjacent(weights, (x ^ signs) - signs);
    }
}
