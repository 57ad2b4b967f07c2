using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd kernel for grouped 8-bit weights (<see cref="GroupedInt8Matrix"/>), twin of
/// <see cref="Scalar.ScalarGroupedInt8Kernel"/>, over the 8-row interleaved copy <see cref="GroupedInt8RowBlocks"/> (the
/// x86 kernels' layout, with float scales): one 16-byte register holds 4 rows × 4 columns, so each int32 lane ends as
/// one row's group sum <c>acc[r, g] = Σ_{c∈g} w_q · x_q</c> and no reduction over columns is needed. Then per row, in
/// group order, the twin's float operations on 4 rows per vector: <c>f ← fma(s_w[r, g] · s_x[t, g], acc, f)</c>, with
/// offsets <c>f ← f − (o_w[r, g] · s_x[t, g]) · Σ_{c∈g} x_q</c> (fused), and <c>y = s_x[t] · f</c>: equal to it bit for bit.
/// </summary>
/// <remarks>
/// Two ways to the products, one per core kind:
/// <list type="bullet">
/// <item>SDOT by quadruplet (<c>Dp.DotProductBySelectedQuadruplet</c>, Cortex-A76 and later): 16 activation codes in one
/// register, quadruplet k against chunk k's 4 rows × 4 codes, straight into int32 lanes; 4 tokens per weight load.</item>
/// <item>Without SDOT: the chunk's quadruplet repeated (<c>DUP</c>), <c>SMULL</c> / <c>SMLAL</c> (and their upper forms)
/// over two chunks into int16 lanes (row, column mod 4): ≤ 2 products of ≤ 128 · 127 (≤ 32512, no overflow), then
/// <c>SADDLP</c> / <c>SADALP</c> into int32 and one <c>ADDP</c> per 4 rows per group; 2 tokens per weight load.</item>
/// </list>
/// A group's weight factors for the block's 8 rows are two vector loads (per-group scales), or for super-block scales
/// the 8 int8 sub-scales widened, converted and multiplied by the super-block's 8 floats (loaded once per super-block).
/// </remarks>
internal sealed unsafe class AdvSimdGroupedInt8Kernel : QuantizedMatMulKernel<GroupedInt8Matrix>
{
    private const int BlockRows = GroupedInt8RowBlocks.BlockRows;

    /// <summary>Bytes of one 4-column chunk of a block: 8 rows × 4 codes.</summary>
    private const int ChunkBytes = BlockRows * GroupedInt8RowBlocks.ChunkColumns;

    private readonly bool _useDotProduct;

    /// <summary>Whether this CPU and runtime allow the kernel (64-bit ARM AdvSimd enabled).</summary>
    public static bool IsSupported => Arm.AdvSimd.Arm64.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not supported.</summary>
    /// <param name="activationBits">8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="useDotProduct">Use SDOT (default: when <c>Dp.IsSupported</c>); false forces the SMULL path.</param>
    public AdvSimdGroupedInt8Kernel(int activationBits = 8, int threads = 0, bool? useDotProduct = null)
        : base(activationBits, threads, IsSupported && (useDotProduct != true || Arm.Dp.IsSupported), "64-bit ARM AdvSimd (and Dp for SDOT)")
    {
        _useDotProduct = useDotProduct ?? Arm.Dp.IsSupported;
    }

    /// <inheritdoc />
    public override string Name => $"w8g-a{ActivationBits}-advsimd-" + (_useDotProduct ? "sdot" : "smull");

    // Activation groups are the weight groups: their sums for the offsets, their scales with per-group activation scales.
    private protected override int GroupSize(GroupedInt8Matrix weights) => weights.GroupSize;

    private protected override bool TakesGroupScales(GroupedInt8Matrix weights) => true;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // The matrix is streamed as GroupedInt8RowBlocks with float (not half) scales: repacked once, when the model is built or on the first call.
    private protected override void PrepareWeights(GroupedInt8Matrix weights) => weights.RepackToRowBlocks(halfScales: false);

    // A thread's share starts on a row block.
    private protected override int RowBlock => BlockRows;

    private protected override void MultiplyRows(GroupedInt8Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        GroupedInt8RowBlocks blocks = w.RowBlocks ?? throw new InvalidOperationException("The row-block copy of this matrix was not built (PrepareWeights did not run).");
        if (blocks.Encoding == GroupScaleEncoding.Half)
            throw new InvalidOperationException("The row-block copy of this matrix holds half scales (an x86 kernel's copy); the AdvSimd kernel reads float scales.");
        fixed (sbyte* codes = blocks.Codes)
        fixed (byte* scaleEntries = blocks.ScaleEntries)
        fixed (float* superScales = blocks.SuperScales)
        fixed (byte* offsetEntries = blocks.OffsetEntries)
        fixed (float* superOffsets = blocks.SuperOffsets)
        fixed (sbyte* x = xq.Codes)
        fixed (float* groupSums = xq.GroupSumsAsFloat)
        fixed (float* groupScales = xq.GroupScales)
        fixed (float* tokenScales = xq.Scales)
        {
            var call = new GroupedCall(blocks, codes, scaleEntries, superScales, offsetEntries, superOffsets, x, xq.Stride, groupSums, groupScales,
                xq.GroupCount, tokenScales, y);
            int firstBlock = rowBegin / BlockRows, endBlock = (rowEnd + BlockRows - 1) / BlockRows;
            if (blocks.Encoding == GroupScaleEncoding.SuperBlock) ByOffsets<Yes>(call, xq.Tokens, firstBlock, endBlock, blocks.HasOffsets, blocks.GroupSize == 32);
            else ByOffsets<No>(call, xq.Tokens, firstBlock, endBlock, blocks.HasOffsets, blocks.GroupSize == 32);
        }
    }

    private void ByOffsets<TSuper>(in GroupedCall call, int tokens, int firstBlock, int endBlock, bool offsets, bool wideGroups) where TSuper : struct, IFlag
    {
        if (offsets) ByWidth<TSuper, Yes>(call, tokens, firstBlock, endBlock, wideGroups);
        else ByWidth<TSuper, No>(call, tokens, firstBlock, endBlock, wideGroups);
    }

    private void ByWidth<TSuper, TOffsets>(in GroupedCall call, int tokens, int firstBlock, int endBlock, bool wideGroups)
        where TSuper : struct, IFlag where TOffsets : struct, IFlag
    {
        if (wideGroups) ByPath<TSuper, TOffsets, Yes>(call, tokens, firstBlock, endBlock);
        else ByPath<TSuper, TOffsets, No>(call, tokens, firstBlock, endBlock);
    }

    private void ByPath<TSuper, TOffsets, TWide>(in GroupedCall call, int tokens, int firstBlock, int endBlock)
        where TSuper : struct, IFlag where TOffsets : struct, IFlag where TWide : struct, IFlag
    {
        if (_useDotProduct) Multiply<DotProductPath, TSuper, TOffsets, TWide>(call, tokens, firstBlock, endBlock);
        else Multiply<WideningMultiplyPath, TSuper, TOffsets, TWide>(call, tokens, firstBlock, endBlock);
    }

    // y[t, r] for all tokens and the rows of blocks [firstBlock, endBlock): each block × a tile of tokens per weight load.
    private static void Multiply<TPath, TSuper, TOffsets, TWide>(in GroupedCall call, int tokens, int firstBlock, int endBlock)
        where TPath : struct, IGroupDot where TSuper : struct, IFlag where TOffsets : struct, IFlag where TWide : struct, IFlag
    {
        for (int b = firstBlock; b < endBlock; b++)
            for (int t0 = 0; t0 < tokens; t0 += TPath.TokenTile)
                switch (Math.Min(TPath.TokenTile, tokens - t0))
                {
                    case 4: Tile<TPath, TSuper, TOffsets, TWide, FourTokens>(call, b, t0); break;
                    case 3: Tile<TPath, TSuper, TOffsets, TWide, ThreeTokens>(call, b, t0); break;
                    case 2: Tile<TPath, TSuper, TOffsets, TWide, TwoTokens>(call, b, t0); break;
                    default: Tile<TPath, TSuper, TOffsets, TWide, OneToken>(call, b, t0); break;
                }
    }

    // y[t, 8b + i] for rows i < 8 of block b and the N tokens t0..: per group, the int32 sums of N tokens × 8 rows, then the fold;
    // groups of 16 two per step.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TPath, TSuper, TOffsets, TWide, N>(in GroupedCall call, int b, int t0)
        where TPath : struct, IGroupDot where TSuper : struct, IFlag where TOffsets : struct, IFlag where TWide : struct, IFlag where N : struct, ITokenCount
    {
        int groups = call.GroupCount;
        nint entryAt = (nint)b * groups * BlockRows, superAt = (nint)b * call.SuperBlockCount * BlockRows;
        var at = new GroupPointers
        {
            W = call.Codes + (nint)b * call.Chunks * ChunkBytes,
            X = call.X + (nint)t0 * call.XStride,
            GroupScales = call.GroupScales + (nint)t0 * call.XGroups,
            GroupSums = call.GroupSums + (nint)t0 * call.XGroups,
            Scales = (float*)call.ScaleEntries + entryAt,
            Offsets = (float*)call.OffsetEntries + entryAt,
            SubScales = (sbyte*)call.ScaleEntries + entryAt,
            SubOffsets = (sbyte*)call.OffsetEntries + entryAt,
        };
        var strides = new TokenStrides(call.XStride, call.XGroups);
        float* superScales = call.SuperScales + superAt, superOffsets = call.SuperOffsets + superAt;
        // per token (the letter), rows 0..3 (0) and 4..7 (1)
        var f = new TokenRows();
        int groupBytes = TWide.Value ? 8 * ChunkBytes : 4 * ChunkBytes;
        for (int g = 0; g < groups;)
        {
            int end = groups;
            var super = new SuperFactors();
            if (TSuper.Value)
            {
                end = Math.Min(groups, g + call.GroupsPerSuperBlock);
                super.Scales0 = Arm.AdvSimd.LoadVector128(superScales);
                super.Scales1 = Arm.AdvSimd.LoadVector128(superScales + 4);
                superScales += BlockRows;
                if (TOffsets.Value)
                {
                    super.Offsets0 = Arm.AdvSimd.LoadVector128(superOffsets);
                    super.Offsets1 = Arm.AdvSimd.LoadVector128(superOffsets + 4);
                    superOffsets += BlockRows;
                }
            }
            sbyte* wEnd = at.W + (nint)(end - g) * groupBytes;
            g = end;
            if (!TWide.Value)
                for (; at.W + 2 * groupBytes <= wEnd; at.Advance<TWide>(2))
                {
                    Group<TPath, TSuper, TOffsets, TWide, N>(at, 0, strides, super, ref f);
                    Group<TPath, TSuper, TOffsets, TWide, N>(at, 1, strides, super, ref f);
                }
            for (; at.W < wEnd; at.Advance<TWide>(1)) Group<TPath, TSuper, TOffsets, TWide, N>(at, 0, strides, super, ref f);
        }
        int rows = Math.Min(BlockRows, call.Rows - b * BlockRows);
        float* y = call.Y + (nint)t0 * call.Rows + (nint)b * BlockRows;
        float* tokenScales = call.TokenScales + t0;
        AdvSimdEightRows.Store(f.A0 * tokenScales[0], f.A1 * tokenScales[0], y, rows);
        if (N.Value > 1) AdvSimdEightRows.Store(f.B0 * tokenScales[1], f.B1 * tokenScales[1], y + call.Rows, rows);
        if (N.Value > 2) AdvSimdEightRows.Store(f.C0 * tokenScales[2], f.C1 * tokenScales[2], y + 2 * (nint)call.Rows, rows);
        if (N.Value > 3) AdvSimdEightRows.Store(f.D0 * tokenScales[3], f.D1 * tokenScales[3], y + 3 * (nint)call.Rows, rows);
    }

    // Group k after the one `at` points to (k = 0 or 1): its int32 sums, its weight factors, the fold for each token.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Group<TPath, TSuper, TOffsets, TWide, N>(in GroupPointers at, [ConstantExpected(Max = 1)] int k, in TokenStrides strides,
        in SuperFactors super, ref TokenRows f)
        where TPath : struct, IGroupDot where TSuper : struct, IFlag where TOffsets : struct, IFlag where TWide : struct, IFlag where N : struct, ITokenCount
    {
        int groupBytes = TWide.Value ? 8 * ChunkBytes : 4 * ChunkBytes, groupColumns = TWide.Value ? 32 : 16;
        Vector128<int> a0, a1, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
        TPath.Sums<N, TWide>(at.W + k * groupBytes, at.X + k * groupColumns, strides.X1, strides.X2, strides.X3,
            out a0, out a1, ref b0, ref b1, ref c0, ref c1, ref d0, ref d1);
        Vector128<float> s0, s1, o0 = default, o1 = default;
        if (TSuper.Value)
        {
            (s0, s1) = SubFactors(at.SubScales + k * BlockRows, super.Scales0, super.Scales1);
            if (TOffsets.Value) (o0, o1) = SubFactors(at.SubOffsets + k * BlockRows, super.Offsets0, super.Offsets1);
        }
        else
        {
            s0 = Arm.AdvSimd.LoadVector128(at.Scales + k * BlockRows);
            s1 = Arm.AdvSimd.LoadVector128(at.Scales + k * BlockRows + 4);
            if (TOffsets.Value)
            {
                o0 = Arm.AdvSimd.LoadVector128(at.Offsets + k * BlockRows);
                o1 = Arm.AdvSimd.LoadVector128(at.Offsets + k * BlockRows + 4);
            }
        }
        float* gs = at.GroupScales + k, sums = at.GroupSums + k;
        Fold<TOffsets>(ref f.A0, ref f.A1, a0, a1, s0, s1, o0, o1, gs, sums);
        if (N.Value > 1) Fold<TOffsets>(ref f.B0, ref f.B1, b0, b1, s0, s1, o0, o1, gs + strides.G1, sums + strides.G1);
        if (N.Value > 2) Fold<TOffsets>(ref f.C0, ref f.C1, c0, c1, s0, s1, o0, o1, gs + strides.G2, sums + strides.G2);
        if (N.Value > 3) Fold<TOffsets>(ref f.D0, ref f.D1, d0, d1, s0, s1, o0, o1, gs + strides.G3, sums + strides.G3);
    }

    // The 8 rows' factors super[i] · sub[i] (one rounding, as GroupedInt8Matrix.Scale): rows 0..3 and 4..7 (the upper
    // half widened first, so the lower half's use is the last and the JIT needs no register copy).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<float> Rows0To3, Vector128<float> Rows4To7) SubFactors(sbyte* sub, Vector128<float> super0, Vector128<float> super1)
    {
        Vector128<short> wide = Arm.AdvSimd.SignExtendWideningLower(Arm.AdvSimd.LoadVector64(sub));
        Vector128<float> rows4To7 = super1 * Arm.AdvSimd.ConvertToSingle(Arm.AdvSimd.SignExtendWideningUpper(wide));
        return (super0 * Arm.AdvSimd.ConvertToSingle(Arm.AdvSimd.SignExtendWideningLower(wide.GetLower())), rows4To7);
    }

    // One token's group: f ← fma(s_w · s_x,g, acc, f), then with offsets f ← f − (o_w · s_x,g) · Σx_q (fused), 4 rows per vector.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fold<TOffsets>(ref Vector128<float> f0, ref Vector128<float> f1, Vector128<int> acc0, Vector128<int> acc1,
        Vector128<float> s0, Vector128<float> s1, Vector128<float> o0, Vector128<float> o1, float* groupScale, float* groupSum) where TOffsets : struct, IFlag
    {
        Vector64<float> xs = Vector64.CreateScalarUnsafe(*groupScale);
        f0 = Arm.AdvSimd.FusedMultiplyAdd(f0, Arm.AdvSimd.MultiplyByScalar(s0, xs), Arm.AdvSimd.ConvertToSingle(acc0));
        f1 = Arm.AdvSimd.FusedMultiplyAdd(f1, Arm.AdvSimd.MultiplyByScalar(s1, xs), Arm.AdvSimd.ConvertToSingle(acc1));
        if (!TOffsets.Value) return;
        Vector64<float> sum = Vector64.CreateScalarUnsafe(*groupSum);
        f0 = Arm.AdvSimd.Arm64.FusedMultiplySubtractByScalar(f0, Arm.AdvSimd.MultiplyByScalar(o0, xs), sum);
        f1 = Arm.AdvSimd.Arm64.FusedMultiplySubtractByScalar(f1, Arm.AdvSimd.MultiplyByScalar(o1, xs), sum);
    }

    /// <summary>How a group's 8 rows × 16 or 32 columns reach one int32 lane per row.</summary>
    private interface IGroupDot
    {
        /// <summary>Tokens per weight load.</summary>
        static abstract int TokenTile { get; }

        /// <summary>
        /// The group's sums Σ w_q · x_q for the N tokens at x, x + x1, x + x2, x + x3 (a: the first; b, c, d set only
        /// when N reaches them): rows 0..3 in the 0 vectors, 4..7 in the 1 vectors; w the group's first chunk.
        /// </summary>
        static abstract void Sums<N, TWide>(sbyte* w, sbyte* x, nint x1, nint x2, nint x3, out Vector128<int> a0, out Vector128<int> a1,
            ref Vector128<int> b0, ref Vector128<int> b1, ref Vector128<int> c0, ref Vector128<int> c1, ref Vector128<int> d0, ref Vector128<int> d1)
            where N : struct, ITokenCount where TWide : struct, IFlag;
    }

    private readonly struct DotProductPath : IGroupDot
    {
        public static int TokenTile => 4;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Sums<N, TWide>(sbyte* w, sbyte* x, nint x1, nint x2, nint x3, out Vector128<int> a0, out Vector128<int> a1,
            ref Vector128<int> b0, ref Vector128<int> b1, ref Vector128<int> c0, ref Vector128<int> c1, ref Vector128<int> d0, ref Vector128<int> d1)
            where N : struct, ITokenCount where TWide : struct, IFlag
        {
            a0 = a1 = default;
            Sixteen<N>(w, x, x1, x2, x3, ref a0, ref a1, ref b0, ref b1, ref c0, ref c1, ref d0, ref d1);
            if (TWide.Value) Sixteen<N>(w + 4 * ChunkBytes, x + 16, x1, x2, x3, ref a0, ref a1, ref b0, ref b1, ref c0, ref c1, ref d0, ref d1);
        }

        // 16 columns (4 chunks): each chunk's two loads feed 2 SDOTs per token, the token's quadruplet k for chunk k.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Sixteen<N>(sbyte* w, sbyte* x, nint x1, nint x2, nint x3, ref Vector128<int> a0, ref Vector128<int> a1,
            ref Vector128<int> b0, ref Vector128<int> b1, ref Vector128<int> c0, ref Vector128<int> c1, ref Vector128<int> d0, ref Vector128<int> d1)
            where N : struct, ITokenCount
        {
            Vector128<sbyte> xa = Arm.AdvSimd.LoadVector128(x), xb = default, xc = default, xd = default;
            if (N.Value > 1) xb = Arm.AdvSimd.LoadVector128(x + x1);
            if (N.Value > 2) xc = Arm.AdvSimd.LoadVector128(x + x2);
            if (N.Value > 3) xd = Arm.AdvSimd.LoadVector128(x + x3);
            Vector128<sbyte> l0 = Arm.AdvSimd.LoadVector128(w), h0 = Arm.AdvSimd.LoadVector128(w + 16);
            Vector128<sbyte> l1 = Arm.AdvSimd.LoadVector128(w + 32), h1 = Arm.AdvSimd.LoadVector128(w + 48);
            Vector128<sbyte> l2 = Arm.AdvSimd.LoadVector128(w + 64), h2 = Arm.AdvSimd.LoadVector128(w + 80);
            Vector128<sbyte> l3 = Arm.AdvSimd.LoadVector128(w + 96), h3 = Arm.AdvSimd.LoadVector128(w + 112);
            Token(xa, l0, h0, l1, h1, l2, h2, l3, h3, ref a0, ref a1);
            if (N.Value > 1) Token(xb, l0, h0, l1, h1, l2, h2, l3, h3, ref b0, ref b1);
            if (N.Value > 2) Token(xc, l0, h0, l1, h1, l2, h2, l3, h3, ref c0, ref c1);
            if (N.Value > 3) Token(xd, l0, h0, l1, h1, l2, h2, l3, h3, ref d0, ref d1);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Token(Vector128<sbyte> x, Vector128<sbyte> l0, Vector128<sbyte> h0, Vector128<sbyte> l1, Vector128<sbyte> h1,
            Vector128<sbyte> l2, Vector128<sbyte> h2, Vector128<sbyte> l3, Vector128<sbyte> h3, ref Vector128<int> lo, ref Vector128<int> hi)
        {
            lo = Arm.Dp.DotProductBySelectedQuadruplet(lo, l0, x, 0);
            hi = Arm.Dp.DotProductBySelectedQuadruplet(hi, h0, x, 0);
            lo = Arm.Dp.DotProductBySelectedQuadruplet(lo, l1, x, 1);
            hi = Arm.Dp.DotProductBySelectedQuadruplet(hi, h1, x, 1);
            lo = Arm.Dp.DotProductBySelectedQuadruplet(lo, l2, x, 2);
            hi = Arm.Dp.DotProductBySelectedQuadruplet(hi, h2, x, 2);
            lo = Arm.Dp.DotProductBySelectedQuadruplet(lo, l3, x, 3);
            hi = Arm.Dp.DotProductBySelectedQuadruplet(hi, h3, x, 3);
        }
    }

    private readonly struct WideningMultiplyPath : IGroupDot
    {
        public static int TokenTile => 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Sums<N, TWide>(sbyte* w, sbyte* x, nint x1, nint x2, nint x3, out Vector128<int> a0, out Vector128<int> a1,
            ref Vector128<int> b0, ref Vector128<int> b1, ref Vector128<int> c0, ref Vector128<int> c1, ref Vector128<int> d0, ref Vector128<int> d1)
            where N : struct, ITokenCount where TWide : struct, IFlag
        {
            // int32 lanes (row, column pair) of rows 0-1, 2-3, 4-5, 6-7, per token
            Vector128<int> a01, a23, a45, a67, b01 = default, b23 = default, b45 = default, b67 = default;
            Vector128<sbyte> xa = Arm.AdvSimd.LoadVector128(x), xb = N.Value > 1 ? Arm.AdvSimd.LoadVector128(x + x1) : default;
            Pair(w, xa, 0, 1, out a01, out a23, out a45, out a67);
            if (N.Value > 1) Pair(w, xb, 0, 1, out b01, out b23, out b45, out b67);
            PairAdd(w + 2 * ChunkBytes, xa, 2, 3, ref a01, ref a23, ref a45, ref a67);
            if (N.Value > 1) PairAdd(w + 2 * ChunkBytes, xb, 2, 3, ref b01, ref b23, ref b45, ref b67);
            if (TWide.Value)
            {
                xa = Arm.AdvSimd.LoadVector128(x + 16);
                if (N.Value > 1) xb = Arm.AdvSimd.LoadVector128(x + x1 + 16);
                PairAdd(w + 4 * ChunkBytes, xa, 0, 1, ref a01, ref a23, ref a45, ref a67);
                if (N.Value > 1) PairAdd(w + 4 * ChunkBytes, xb, 0, 1, ref b01, ref b23, ref b45, ref b67);
                PairAdd(w + 6 * ChunkBytes, xa, 2, 3, ref a01, ref a23, ref a45, ref a67);
                if (N.Value > 1) PairAdd(w + 6 * ChunkBytes, xb, 2, 3, ref b01, ref b23, ref b45, ref b67);
            }
            a0 = Arm.AdvSimd.Arm64.AddPairwise(a01, a23);
            a1 = Arm.AdvSimd.Arm64.AddPairwise(a45, a67);
            if (N.Value > 1)
            {
                b0 = Arm.AdvSimd.Arm64.AddPairwise(b01, b23);
                b1 = Arm.AdvSimd.Arm64.AddPairwise(b45, b67);
            }
        }

        // The first pair of chunks of a group (k, k + 1 at w): SADDLP starts the int32 lanes.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Pair(sbyte* w, Vector128<sbyte> x, [ConstantExpected(Max = (byte)2)] byte k, [ConstantExpected(Max = (byte)3)] byte k1,
            out Vector128<int> r01, out Vector128<int> r23, out Vector128<int> r45, out Vector128<int> r67)
        {
            (Vector128<short> p01, Vector128<short> p23, Vector128<short> p45, Vector128<short> p67) = Products(w, x, k, k1);
            r01 = Arm.AdvSimd.AddPairwiseWidening(p01);
            r23 = Arm.AdvSimd.AddPairwiseWidening(p23);
            r45 = Arm.AdvSimd.AddPairwiseWidening(p45);
            r67 = Arm.AdvSimd.AddPairwiseWidening(p67);
        }

        // A later pair: SADALP adds into the int32 lanes.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void PairAdd(sbyte* w, Vector128<sbyte> x, [ConstantExpected(Max = (byte)2)] byte k, [ConstantExpected(Max = (byte)3)] byte k1,
            ref Vector128<int> r01, ref Vector128<int> r23, ref Vector128<int> r45, ref Vector128<int> r67)
        {
            (Vector128<short> p01, Vector128<short> p23, Vector128<short> p45, Vector128<short> p67) = Products(w, x, k, k1);
            r01 = Arm.AdvSimd.AddPairwiseWideningAndAdd(r01, p01);
            r23 = Arm.AdvSimd.AddPairwiseWideningAndAdd(r23, p23);
            r45 = Arm.AdvSimd.AddPairwiseWideningAndAdd(r45, p45);
            r67 = Arm.AdvSimd.AddPairwiseWideningAndAdd(r67, p67);
        }

        // int16 lanes (row, column mod 4) of rows 0-1, 2-3, 4-5, 6-7: chunk k's and chunk k + 1's products (at w and w + 32),
        // each against its quadruplet of x repeated (the upper halves first, so each lower half's use is its last: no register copies).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static (Vector128<short>, Vector128<short>, Vector128<short>, Vector128<short>) Products(sbyte* w, Vector128<sbyte> x,
            [ConstantExpected(Max = (byte)2)] byte k, [ConstantExpected(Max = (byte)3)] byte k1)
        {
            Vector128<sbyte> q0 = Arm.AdvSimd.DuplicateSelectedScalarToVector128(x.AsInt32(), k).AsSByte();
            Vector128<sbyte> q1 = Arm.AdvSimd.DuplicateSelectedScalarToVector128(x.AsInt32(), k1).AsSByte();
            Vector64<sbyte> q0Low = Arm.AdvSimd.DuplicateSelectedScalarToVector64(x.AsInt32(), k).AsSByte();
            Vector64<sbyte> q1Low = Arm.AdvSimd.DuplicateSelectedScalarToVector64(x.AsInt32(), k1).AsSByte();
            Vector128<sbyte> l0 = Arm.AdvSimd.LoadVector128(w), h0 = Arm.AdvSimd.LoadVector128(w + 16);
            Vector128<sbyte> l1 = Arm.AdvSimd.LoadVector128(w + ChunkBytes), h1 = Arm.AdvSimd.LoadVector128(w + ChunkBytes + 16);
            Vector128<short> p23 = Arm.AdvSimd.MultiplyWideningUpperAndAdd(Arm.AdvSimd.MultiplyWideningUpper(l0, q0), l1, q1);
            Vector128<short> p67 = Arm.AdvSimd.MultiplyWideningUpperAndAdd(Arm.AdvSimd.MultiplyWideningUpper(h0, q0), h1, q1);
            Vector128<short> p01 = Arm.AdvSimd.MultiplyWideningLowerAndAdd(Arm.AdvSimd.MultiplyWideningLower(l0.GetLower(), q0Low), l1.GetLower(), q1Low);
            Vector128<short> p45 = Arm.AdvSimd.MultiplyWideningLowerAndAdd(Arm.AdvSimd.MultiplyWideningLower(h0.GetLower(), q0Low), h1.GetLower(), q1Low);
            return (p01, p23, p45, p67);
        }
    }

    /// <summary>A compile-time yes or no (super-block scales, offsets, groups of 32).</summary>
    private interface IFlag
    {
        static abstract bool Value { get; }
    }

    private readonly struct Yes : IFlag
    {
        public static bool Value => true;
    }

    private readonly struct No : IFlag
    {
        public static bool Value => false;
    }

    /// <summary>Where a tile's walk over the groups stands: the current group's codes, activations and factors.</summary>
    private struct GroupPointers
    {
        public sbyte* W; // the group's first chunk of the block
        public sbyte* X; // the first token's codes at the group's first column
        public float* GroupScales; // the first token's s_x[t, g]
        public float* GroupSums; // the first token's Σx_q over g
        public float* Scales; // the block's 8 float scales of g (per-group scales)
        public float* Offsets; // likewise offsets
        public sbyte* SubScales; // the block's 8 int8 sub-scales of g (super-block scales)
        public sbyte* SubOffsets; // likewise sub-offsets

        /// <summary>Moves on by <paramref name="groups"/> groups.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Advance<TWide>(int groups) where TWide : struct, IFlag
        {
            W += groups * (TWide.Value ? 8 * ChunkBytes : 4 * ChunkBytes);
            X += groups * (TWide.Value ? 32 : 16);
            GroupScales += groups;
            GroupSums += groups;
            Scales += groups * BlockRows;
            Offsets += groups * BlockRows;
            SubScales += groups * BlockRows;
            SubOffsets += groups * BlockRows;
        }
    }

    /// <summary>Distances from the first token of a tile to the next ones: in activation codes (X) and in groups (G).</summary>
    private readonly struct TokenStrides(nint xStride, nint groupStride)
    {
        public readonly nint X1 = xStride, X2 = 2 * xStride, X3 = 3 * xStride;
        public readonly nint G1 = groupStride, G2 = 2 * groupStride, G3 = 3 * groupStride;
    }

    /// <summary>A super-block's float scales and offsets for the block's rows 0..3 (0) and 4..7 (1).</summary>
    private struct SuperFactors
    {
        public Vector128<float> Scales0, Scales1, Offsets0, Offsets1;
    }

    /// <summary>The running sums f of a tile: per token (the letter), rows 0..3 (0) and 4..7 (1).</summary>
    private struct TokenRows
    {
        public Vector128<float> A0, A1, B0, B1, C0, C1, D0, D1;
    }

    /// <summary>Pointers and shape of one call.</summary>
    private readonly struct GroupedCall(GroupedInt8RowBlocks blocks, sbyte* codes, byte* scaleEntries, float* superScales, byte* offsetEntries,
        float* superOffsets, sbyte* x, int xStride, float* groupSums, float* groupScales, int xGroups, float* tokenScales, float* y)
    {
        public readonly sbyte* Codes = codes; // (Blocks, Chunks, 32)
        public readonly byte* ScaleEntries = scaleEntries; // (Blocks, GroupCount, 8) floats, or int8 sub-scales with super-blocks
        public readonly float* SuperScales = superScales; // (Blocks, SuperBlockCount, 8)
        public readonly byte* OffsetEntries = offsetEntries; // as ScaleEntries; null without offsets
        public readonly float* SuperOffsets = superOffsets; // as SuperScales
        public readonly sbyte* X = x; // (tokens, XStride)
        public readonly float* GroupSums = groupSums; // (tokens, XGroups)
        public readonly float* GroupScales = groupScales; // (tokens, XGroups)
        public readonly float* TokenScales = tokenScales; // (tokens)
        public readonly float* Y = y; // (tokens, Rows)
        public readonly nint XStride = xStride;
        public readonly int XGroups = xGroups;
        public readonly int Rows = blocks.Rows;
        public readonly int Chunks = blocks.Chunks;
        public readonly int GroupCount = blocks.GroupCount;
        public readonly int SuperBlockCount = blocks.SuperBlockCount;
        public readonly int GroupsPerSuperBlock = 1 << blocks.SuperBlockShift;
    }
}
