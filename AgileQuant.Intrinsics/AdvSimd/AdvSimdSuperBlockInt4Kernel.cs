using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd kernel for <see cref="SuperBlockInt4Matrix"/>, twin of <see cref="Scalar.ScalarSuperBlockInt4Kernel"/>, over the
/// same 8-row interleaved layout as the x86 kernels: per chunk the 32 bytes of a row block are two q registers of 4 rows ×
/// 4 bytes, whose low nibbles are columns 0..3 and high nibbles 4..7 (values u(q): the code, or the codebook entry by
/// <c>TBL</c>), so each int32 lane is one row's dot product and no horizontal sum over columns is needed.
/// <c>I = Σ_s sc_s · Σ_{c∈s} u(q) · x_q</c>, <c>M = Σ_s c_s · S_s</c>, per super-block <c>f = fma(I, d · s_x,b, f)</c>,
/// <c>f = fma(−M, e · s_x,b, f)</c>, <c>y = s_x · f</c> (s_x,b the activation scale of the super-block, 1 with per-token
/// scales): the scalar twin's order, so equal to it bit for bit.
/// </summary>
/// <remarks>
/// With SDOT (Cortex-A76 and later): <c>SDOT v.4s, w.16b, x.4b[i]</c> by quadruplet, the activation quadruplet of columns
/// 0..3 (i = 0) or 4..7 (i = 1). Without (Cortex-A72): <c>SMLAL</c> of each row's 4 weights against the quadruplet repeated
/// into int16 lanes (row, column mod 4), ≤ 8 products of ≤ 15 · 127 per lane over a sub-block of plain codes, ≤ 2 of
/// ≤ 127 · 127 per chunk of codebook values, then <c>SADDLP</c> + <c>ADDP</c> to one int32 per row. The correction:
/// <c>SMLAL</c> of the sign-extended (c_{2j}, c_{2j+1}) pairs against (S_{2j}, S_{2j+1}), <c>ADDP</c> per row.
/// A tile is one row block × up to 2 tokens.
/// </remarks>
internal sealed unsafe class AdvSimdSuperBlockInt4Kernel : SuperBlockInt4MatMulKernel
{
    /// <summary>Tokens that share one unpack of a weight chunk.</summary>
    private const int TokenTile = 2;

    private readonly bool _dotProduct;

    /// <summary>Whether this CPU and runtime allow the kernel (64-bit ARM AdvSimd enabled).</summary>
    public static bool IsSupported => Arm.AdvSimd.Arm64.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not supported.</summary>
    /// <param name="activationBits">8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="useDotProduct">Use SDOT (default: when <c>Dp.IsSupported</c>); false forces the path of cores without it.</param>
    public AdvSimdSuperBlockInt4Kernel(int activationBits = 8, int threads = 0, bool? useDotProduct = null)
        : base(activationBits, threads, IsSupported && (useDotProduct != true || Arm.Dp.IsSupported), "64-bit ARM AdvSimd (and Dp for SDOT)")
    {
        _dotProduct = useDotProduct ?? Arm.Dp.IsSupported;
    }

    /// <inheritdoc />
    public override string Name => $"sbw4a{ActivationBits}-advsimd-" + (_dotProduct ? "sdot" : "smlal");

    private protected override void MultiplyPairs(in SuperBlockInt4Call call, int firstPair, int endPair)
    {
        if (_dotProduct) ByCodes<DotProductPath>(call, firstPair, endPair);
        else ByCodes<WideningMultiplyPath>(call, firstPair, endPair);
    }

    private static void ByCodes<TPath>(in SuperBlockInt4Call call, int firstPair, int endPair) where TPath : struct, IDotPath
    {
        if (call.Matrix.Scheme.HasCodebook) BySubBlock<TPath, CodebookCodes>(call, firstPair, endPair);
        else BySubBlock<TPath, PlainCodes>(call, firstPair, endPair);
    }

    private static void BySubBlock<TPath, TCodes>(in SuperBlockInt4Call call, int firstPair, int endPair)
        where TPath : struct, IDotPath where TCodes : struct, ICodes
    {
        if (call.Matrix.Scheme.SubBlockSize == 16) ByCorrection<TPath, TCodes, TwoChunks>(call, firstPair, endPair);
        else ByCorrection<TPath, TCodes, FourChunks>(call, firstPair, endPair);
    }

    private static void ByCorrection<TPath, TCodes, TSub>(in SuperBlockInt4Call call, int firstPair, int endPair)
        where TPath : struct, IDotPath where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks
    {
        if (call.Matrix.Scheme.HasCorrection) Run<TPath, TCodes, TSub, WithCorrection>(call, firstPair, endPair);
        else Run<TPath, TCodes, TSub, NoCorrection>(call, firstPair, endPair);
    }

    private static void Run<TPath, TCodes, TSub, TCorr>(in SuperBlockInt4Call call, int firstPair, int endPair)
        where TPath : struct, IDotPath where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm
    {
        Vector128<sbyte> codebook = call.Codebook is { } k ? Vector128.Create(k) : default;
        int blocks = (call.Rows + SuperBlockInt4Matrix.BlockRows - 1) / SuperBlockInt4Matrix.BlockRows;
        int endBlock = Math.Min(blocks, 2 * endPair);
        for (int b = 2 * firstPair; b < endBlock; b++)
            for (int t0 = 0; t0 < call.Tokens; t0 += TokenTile)
            {
                if (call.Tokens - t0 >= 2) Tile<TPath, TCodes, TSub, TCorr, TwoTokens>(call, b, t0, codebook);
                else Tile<TPath, TCodes, TSub, TCorr, OneToken>(call, b, t0, codebook);
            }
    }

    // y[t, r] = s_x[t] · f[t, r] for the 8 rows of row block `block` and the N tokens t0.. (rows 0..3 in the *0 vectors, 4..7 in *1).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TPath, TCodes, TSub, TCorr, N>(in SuperBlockInt4Call w, int block, int t0, Vector128<sbyte> codebook)
        where TPath : struct, IDotPath where TCodes : struct, ICodes where TSub : struct, ISubBlockChunks where TCorr : struct, ICorrectionTerm
        where N : struct, ITokenCount
    {
        const int PairRows = SuperBlockInt4Matrix.PairRows, BlockRows = SuperBlockInt4Matrix.BlockRows;
        const int ChunkStride = SuperBlockInt4Matrix.ChunkStride, ChunkColumns = SuperBlockInt4Matrix.ChunkColumns;
        Vector128<byte> lowNibbles = Vector128.Create((byte)0x0F);
        int pair = block >> 1, upper = block & 1;
        byte* chunks = w.Packed + (nint)pair * w.Chunks * ChunkStride + upper * 32;               // (chunks, 64): this block's 32
        sbyte* subScales = w.SubScales + (nint)pair * w.SubBlocks * PairRows + upper * BlockRows; // (sub-blocks, 16): this block's 8
        nint superAt = (nint)pair * w.SuperBlocks * PairRows + upper * BlockRows;
        ushort* d = w.SuperScales + superAt;
        ushort* e = w.CorrectionScales + superAt;
        sbyte* corrections = w.Corrections + ((nint)pair * w.SuperBlocks * PairRows * w.CorrectionPairs + upper * BlockRows) * 2;
        sbyte* xa = w.Codes + (nint)t0 * w.CodeStride;
        sbyte* xb = xa + w.CodeStride;
        short* sa = w.SubSums + (nint)t0 * w.SubSumStride;
        short* sb = sa + w.SubSumStride;
        float* ga = w.GroupScales + (nint)t0 * w.GroupScaleStride;
        float* gb = ga + w.GroupScaleStride;
        int perSuper = w.SubBlocksPerSuperBlock, correctionPairs = w.CorrectionPairs;
        Vector128<float> fa0 = default, fa1 = default, fb0 = default, fb1 = default;
        for (int b = 0, s = 0; b < w.SuperBlocks; b++)
        {
            Vector128<int> ia0 = default, ia1 = default, ib0 = default, ib1 = default;
            for (int sEnd = s + perSuper; s < sEnd; s++)
            {
                byte* sub = chunks + (nint)s * TSub.Value * ChunkStride;
                Vector128<short> scales = Arm.AdvSimd.SignExtendWideningLower(Vector64.Load(subScales + s * PairRows));
                Vector128<int> sc0 = Arm.AdvSimd.SignExtendWideningLower(scales.GetLower()), sc1 = Arm.AdvSimd.SignExtendWideningUpper(scales);
                // per token: four accumulators (SDOT: rows 0..3 and 4..7 as int32; SMLAL: rows 0-1, 2-3, 4-5, 6-7 as int16 × 8)
                Vector128<int> aa0 = default, aa1 = default, aa2 = default, aa3 = default, ab0 = default, ab1 = default, ab2 = default, ab3 = default;
                for (int k = 0; k < TSub.Value; k++)
                {
                    Vector128<byte> w0 = Arm.AdvSimd.LoadVector128(sub + k * ChunkStride), w1 = Arm.AdvSimd.LoadVector128(sub + k * ChunkStride + 16);
                    Vector128<sbyte> low0 = TCodes.Values(w0 & lowNibbles, codebook), high0 = TCodes.Values(Arm.AdvSimd.ShiftRightLogical(w0, 4), codebook);
                    Vector128<sbyte> low1 = TCodes.Values(w1 & lowNibbles, codebook), high1 = TCodes.Values(Arm.AdvSimd.ShiftRightLogical(w1, 4), codebook);
                    int column = (s * TSub.Value + k) * ChunkColumns;
                    TPath.Chunk(ref aa0, ref aa1, ref aa2, ref aa3, low0, high0, low1, high1, xa + column);
                    if (N.Value > 1) TPath.Chunk(ref ab0, ref ab1, ref ab2, ref ab3, low0, high0, low1, high1, xb + column);
                    if (TPath.FlushEachChunk<TCodes>())
                    {
                        TPath.Flush(ref ia0, ref ia1, ref aa0, ref aa1, ref aa2, ref aa3, sc0, sc1);
                        if (N.Value > 1) TPath.Flush(ref ib0, ref ib1, ref ab0, ref ab1, ref ab2, ref ab3, sc0, sc1);
                    }
                }
                if (TPath.FlushEachChunk<TCodes>()) continue;
                TPath.Flush(ref ia0, ref ia1, ref aa0, ref aa1, ref aa2, ref aa3, sc0, sc1);
                if (N.Value > 1) TPath.Flush(ref ib0, ref ib1, ref ab0, ref ab1, ref ab2, ref ab3, sc0, sc1);
            }
            Vector128<ushort> halves = Arm.AdvSimd.LoadVector128(d + b * PairRows);
            Vector128<float> d0 = HalfBits.Widen(Arm.AdvSimd.ZeroExtendWideningLower(halves.GetLower()).AsInt32());
            Vector128<float> d1 = HalfBits.Widen(Arm.AdvSimd.ZeroExtendWideningUpper(halves).AsInt32());
            // the super-block's factors times each token's activation scale of the super-block (1 with per-token scales: exact)
            Vector128<float> sxa = Vector128.Create(ga[b]), sxb = N.Value > 1 ? Vector128.Create(gb[b]) : default;
            fa0 = Arm.AdvSimd.FusedMultiplyAdd(fa0, Arm.AdvSimd.ConvertToSingle(ia0), d0 * sxa);
            fa1 = Arm.AdvSimd.FusedMultiplyAdd(fa1, Arm.AdvSimd.ConvertToSingle(ia1), d1 * sxa);
            if (N.Value > 1)
            {
                fb0 = Arm.AdvSimd.FusedMultiplyAdd(fb0, Arm.AdvSimd.ConvertToSingle(ib0), d0 * sxb);
                fb1 = Arm.AdvSimd.FusedMultiplyAdd(fb1, Arm.AdvSimd.ConvertToSingle(ib1), d1 * sxb);
            }
            if (!TCorr.Present) continue;
            Vector128<ushort> eHalves = Arm.AdvSimd.LoadVector128(e + b * PairRows);
            Vector128<float> e0 = HalfBits.Widen(Arm.AdvSimd.ZeroExtendWideningLower(eHalves.GetLower()).AsInt32());
            Vector128<float> e1 = HalfBits.Widen(Arm.AdvSimd.ZeroExtendWideningUpper(eHalves).AsInt32());
            sbyte* c = corrections + (nint)b * correctionPairs * 2 * PairRows;
            int firstSub = b * perSuper;
            (Vector128<int> ma0, Vector128<int> ma1) = Correction(c, correctionPairs, sa + firstSub);
            fa0 = Arm.AdvSimd.FusedMultiplySubtract(fa0, Arm.AdvSimd.ConvertToSingle(ma0), e0 * sxa);
            fa1 = Arm.AdvSimd.FusedMultiplySubtract(fa1, Arm.AdvSimd.ConvertToSingle(ma1), e1 * sxa);
            if (N.Value > 1)
            {
                (Vector128<int> mb0, Vector128<int> mb1) = Correction(c, correctionPairs, sb + firstSub);
                fb0 = Arm.AdvSimd.FusedMultiplySubtract(fb0, Arm.AdvSimd.ConvertToSingle(mb0), e0 * sxb);
                fb1 = Arm.AdvSimd.FusedMultiplySubtract(fb1, Arm.AdvSimd.ConvertToSingle(mb1), e1 * sxb);
            }
        }
        int row = block * BlockRows, rows = Math.Min(BlockRows, w.Rows - row);
        float* y = w.Y + (nint)t0 * w.Rows + row;
        AdvSimdEightRows.Store(fa0 * w.TokenScales[t0], fa1 * w.TokenScales[t0], y, rows);
        if (N.Value > 1) AdvSimdEightRows.Store(fb0 * w.TokenScales[t0 + 1], fb1 * w.TokenScales[t0 + 1], y + w.Rows, rows);
    }

    // M per row (rows 0..3, 4..7) = Σ_j c_{2j} · S_{2j} + c_{2j+1} · S_{2j+1}, exact int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<int> Rows0To3, Vector128<int> Rows4To7) Correction(sbyte* corrections, int pairs, short* sums)
    {
        Vector128<int> m01 = default, m23 = default, m45 = default, m67 = default;
        for (int j = 0; j < pairs; j++)
        {
            Vector128<sbyte> c = Arm.AdvSimd.LoadVector128(corrections + j * 2 * SuperBlockInt4Matrix.PairRows); // rows 0..7 × (c_2j, c_2j+1)
            Vector128<short> c0 = Arm.AdvSimd.SignExtendWideningLower(c.GetLower()), c1 = Arm.AdvSimd.SignExtendWideningUpper(c);
            Vector64<short> sumPair = Vector64.Create(*(int*)(sums + 2 * j)).AsInt16(); // (S_2j, S_2j+1) twice
            Vector128<short> sumPairs = Vector128.Create(sumPair, sumPair);
            m01 = Arm.AdvSimd.MultiplyWideningLowerAndAdd(m01, c0.GetLower(), sumPair);
            m23 = Arm.AdvSimd.MultiplyWideningUpperAndAdd(m23, c0, sumPairs);
            m45 = Arm.AdvSimd.MultiplyWideningLowerAndAdd(m45, c1.GetLower(), sumPair);
            m67 = Arm.AdvSimd.MultiplyWideningUpperAndAdd(m67, c1, sumPairs);
        }
        return (Arm.AdvSimd.Arm64.AddPairwise(m01, m23), Arm.AdvSimd.Arm64.AddPairwise(m45, m67));
    }

    /// <summary>The signed weight values of 16 nibbles (0..15 per byte).</summary>
    private interface ICodes
    {
        /// <summary>Whether the values are codebook entries (|value| ≤ 127) rather than codes (≤ 15).</summary>
        static abstract bool IsCodebook { get; }

        /// <summary>u(q) per byte.</summary>
        static abstract Vector128<sbyte> Values(Vector128<byte> nibbles, Vector128<sbyte> codebook);
    }

    private readonly struct PlainCodes : ICodes
    {
        public static bool IsCodebook => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> Values(Vector128<byte> nibbles, Vector128<sbyte> codebook) => nibbles.AsSByte();
    }

    private readonly struct CodebookCodes : ICodes
    {
        public static bool IsCodebook => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<sbyte> Values(Vector128<byte> nibbles, Vector128<sbyte> codebook) => Arm.AdvSimd.Arm64.VectorTableLookup(codebook, nibbles.AsSByte());
    }

    /// <summary>How one chunk's products reach the per-row int32 sums.</summary>
    private interface IDotPath
    {
        /// <summary>Whether the accumulators must be flushed into the sums after every chunk (not only per sub-block).</summary>
        static abstract bool FlushEachChunk<TCodes>() where TCodes : struct, ICodes;

        /// <summary>Adds the chunk's products u(q) · x (x at <paramref name="x"/>, 8 codes) to the accumulators.</summary>
        static abstract void Chunk(ref Vector128<int> a0, ref Vector128<int> a1, ref Vector128<int> a2, ref Vector128<int> a3,
            Vector128<sbyte> low0, Vector128<sbyte> high0, Vector128<sbyte> low1, Vector128<sbyte> high1, sbyte* x);

        /// <summary>i += sc · (the accumulators as one int32 per row), accumulators cleared.</summary>
        static abstract void Flush(ref Vector128<int> i0, ref Vector128<int> i1, ref Vector128<int> a0, ref Vector128<int> a1,
            ref Vector128<int> a2, ref Vector128<int> a3, Vector128<int> sc0, Vector128<int> sc1);
    }

    /// <summary>SDOT by quadruplet: a0 = rows 0..3, a1 = rows 4..7 (int32); a2, a3 unused.</summary>
    private readonly struct DotProductPath : IDotPath
    {
        public static bool FlushEachChunk<TCodes>() where TCodes : struct, ICodes => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(ref Vector128<int> a0, ref Vector128<int> a1, ref Vector128<int> a2, ref Vector128<int> a3,
            Vector128<sbyte> low0, Vector128<sbyte> high0, Vector128<sbyte> low1, Vector128<sbyte> high1, sbyte* x)
        {
            Vector64<sbyte> quads = Vector64.Load(x); // columns 0..3, 4..7
            a0 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(a0, low0, quads, 0), high0, quads, 1);
            a1 = Arm.Dp.DotProductBySelectedQuadruplet(Arm.Dp.DotProductBySelectedQuadruplet(a1, low1, quads, 0), high1, quads, 1);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Flush(ref Vector128<int> i0, ref Vector128<int> i1, ref Vector128<int> a0, ref Vector128<int> a1,
            ref Vector128<int> a2, ref Vector128<int> a3, Vector128<int> sc0, Vector128<int> sc1)
        {
            i0 = Arm.AdvSimd.MultiplyAdd(i0, a0, sc0);
            i1 = Arm.AdvSimd.MultiplyAdd(i1, a1, sc1);
            a0 = a1 = default;
        }
    }

    /// <summary>SMLAL into int16 lanes (row, column mod 4): a0 = rows 0-1, a1 = rows 2-3, a2 = rows 4-5, a3 = rows 6-7.</summary>
    private readonly struct WideningMultiplyPath : IDotPath
    {
        // codebook products reach 127 · 127: two per lane (one chunk) is the int16 limit
        public static bool FlushEachChunk<TCodes>() where TCodes : struct, ICodes => TCodes.IsCodebook;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(ref Vector128<int> a0, ref Vector128<int> a1, ref Vector128<int> a2, ref Vector128<int> a3,
            Vector128<sbyte> low0, Vector128<sbyte> high0, Vector128<sbyte> low1, Vector128<sbyte> high1, sbyte* x)
        {
            Vector128<sbyte> first = Vector128.Create(*(int*)x).AsSByte(), second = Vector128.Create(*(int*)(x + 4)).AsSByte(); // quadruplets repeated
            a0 = Arm.AdvSimd.MultiplyWideningLowerAndAdd(Arm.AdvSimd.MultiplyWideningLowerAndAdd(a0.AsInt16(), low0.GetLower(), first.GetLower()), high0.GetLower(), second.GetLower()).AsInt32();
            a1 = Arm.AdvSimd.MultiplyWideningUpperAndAdd(Arm.AdvSimd.MultiplyWideningUpperAndAdd(a1.AsInt16(), low0, first), high0, second).AsInt32();
            a2 = Arm.AdvSimd.MultiplyWideningLowerAndAdd(Arm.AdvSimd.MultiplyWideningLowerAndAdd(a2.AsInt16(), low1.GetLower(), first.GetLower()), high1.GetLower(), second.GetLower()).AsInt32();
            a3 = Arm.AdvSimd.MultiplyWideningUpperAndAdd(Arm.AdvSimd.MultiplyWideningUpperAndAdd(a3.AsInt16(), low1, first), high1, second).AsInt32();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Flush(ref Vector128<int> i0, ref Vector128<int> i1, ref Vector128<int> a0, ref Vector128<int> a1,
            ref Vector128<int> a2, ref Vector128<int> a3, Vector128<int> sc0, Vector128<int> sc1)
        {
            Vector128<int> rows0To3 = Arm.AdvSimd.Arm64.AddPairwise(Arm.AdvSimd.AddPairwiseWidening(a0.AsInt16()), Arm.AdvSimd.AddPairwiseWidening(a1.AsInt16()));
            Vector128<int> rows4To7 = Arm.AdvSimd.Arm64.AddPairwise(Arm.AdvSimd.AddPairwiseWidening(a2.AsInt16()), Arm.AdvSimd.AddPairwiseWidening(a3.AsInt16()));
            i0 = Arm.AdvSimd.MultiplyAdd(i0, rows0To3, sc0);
            i1 = Arm.AdvSimd.MultiplyAdd(i1, rows4To7, sc1);
            a0 = a1 = a2 = a3 = default;
        }
    }
}
