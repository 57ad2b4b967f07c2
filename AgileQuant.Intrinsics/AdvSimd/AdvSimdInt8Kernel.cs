using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd W8A8 / W8A4 kernel, twin of <see cref="Scalar.ScalarInt8Kernel"/>:
/// <c>acc = Σ_c w_q · x_q</c> by SDOT where available, else SMULL / SMULL2 (int16 products ≤ 128·127)
/// pairwise-added into int32 lanes (SADALP); then <c>y = s_x · (0 + s_w · acc)</c>, the scalar twin's float operations,
/// so equal to it bit for bit.
/// </summary>
/// <remarks>
/// A tile is 4 rows × up to 4 tokens: each 16-byte load of weights feeds one dot product per token and each load of
/// activations one per row (16 accumulators of 4 int32 lanes), 32 columns per step (rows are padded to a multiple of
/// 32). The 4 lanes of each accumulator are summed at the end by pairwise adds, 4 rows into one vector. The path
/// (SDOT or not) is a type parameter, so each loop is compiled without the other's test.
/// </remarks>
internal sealed unsafe class AdvSimdInt8Kernel : QuantizedMatMulKernel<Int8RowMatrix>
{
    /// <summary>Rows per tile.</summary>
    private const int TileRows = 4;

    /// <summary>Tokens per tile.</summary>
    private const int TokenTile = 4;

    private readonly bool _useDotProduct;

    /// <summary>Whether this CPU and runtime allow the kernel (64-bit ARM AdvSimd enabled).</summary>
    public static bool IsSupported => Arm.AdvSimd.Arm64.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not supported.</summary>
    /// <param name="activationBits">8 (W8A8) or 4 (W8A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="useDotProduct">Use SDOT (default: when <c>Dp.IsSupported</c>); false forces the SMULL path.</param>
    public AdvSimdInt8Kernel(int activationBits = 8, int threads = 0, bool? useDotProduct = null)
        : base(activationBits, threads, IsSupported && (useDotProduct != true || Arm.Dp.IsSupported), "64-bit ARM AdvSimd (and Dp for SDOT)")
    {
        _useDotProduct = useDotProduct ?? Arm.Dp.IsSupported;
    }

    /// <inheritdoc />
    public override string Name => $"w8a{ActivationBits}-advsimd-" + (_useDotProduct ? "sdot" : "smull");

    private protected override int GroupSize(Int8RowMatrix weights) => weights.RowStride;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    // Tiles of 4 rows: a thread's share starts on one.
    private protected override int RowBlock => TileRows;

    private protected override void MultiplyRows(Int8RowMatrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        fixed (sbyte* codes = w.CodeArray)
        fixed (float* rowScales = w.Scales)
        fixed (sbyte* x = xq.Codes)
        fixed (float* tokenScales = xq.Scales)
        {
            var call = new Int8Call(codes, w.RowStride, rowScales, x, xq.Stride, tokenScales, y, w.Rows);
            if (_useDotProduct) Multiply<DotProductPath>(call, xq.Tokens, rowBegin, rowEnd);
            else Multiply<WideningMultiplyPath>(call, xq.Tokens, rowBegin, rowEnd);
        }
    }

    private static void Multiply<TPath>(in Int8Call call, int tokens, int rowBegin, int rowEnd) where TPath : struct, IDotPath
    {
        int r = rowBegin;
        for (; r + TileRows <= rowEnd; r += TileRows)
            for (int t0 = 0; t0 < tokens; t0 += TokenTile)
                switch (Math.Min(TokenTile, tokens - t0))
                {
                    case 4: Tile<TPath, FourTokens>(call, r, t0); break;
                    case 3: Tile<TPath, ThreeTokens>(call, r, t0); break;
                    case 2: Tile<TPath, TwoTokens>(call, r, t0); break;
                    default: Tile<TPath, OneToken>(call, r, t0); break;
                }
        for (; r < rowEnd; r++)
            for (int t = 0; t < tokens; t++)
            {
                int acc = RowSum<TPath>(call.Codes + (nint)r * call.Stride, call.X + (nint)t * call.XStride, call.Stride);
                call.Y[(nint)t * call.Rows + r] = GroupEpilogue.Dequantize(call.TokenScales[t], new ReadOnlySpan<float>(in call.RowScales[r]), new ReadOnlySpan<int>(in acc));
            }
    }

    // y[t, r0 + i] = s_x[t] · (0 + s_w[r0 + i] · Σ_c w_q[r0 + i, c] · x_q[t, c]) for rows i < 4 and the N tokens t0..
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TPath, N>(in Int8Call call, int r0, int t0) where TPath : struct, IDotPath where N : struct, ITokenCount
    {
        nint stride = call.Stride;
        sbyte* w0 = call.Codes + (nint)r0 * stride, w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride, end = w0 + stride;
        sbyte* xa = call.X + (nint)t0 * call.XStride, xb = xa + call.XStride, xc = xb + call.XStride, xd = xc + call.XStride;
        // per token (the letter) and row (the digit)
        Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector128<int> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
        for (; w0 < end; w0 += 32, w1 += 32, w2 += 32, w3 += 32, xa += 32, xb += 32, xc += 32, xd += 32)
        {
            // 32 columns per step (rows are padded to 32): each pointer's two 16-byte halves loaded together (one LDP)
            Vector128<sbyte> v0 = Arm.AdvSimd.LoadVector128(w0), u0 = Arm.AdvSimd.LoadVector128(w0 + 16);
            Vector128<sbyte> v1 = Arm.AdvSimd.LoadVector128(w1), u1 = Arm.AdvSimd.LoadVector128(w1 + 16);
            Vector128<sbyte> v2 = Arm.AdvSimd.LoadVector128(w2), u2 = Arm.AdvSimd.LoadVector128(w2 + 16);
            Vector128<sbyte> v3 = Arm.AdvSimd.LoadVector128(w3), u3 = Arm.AdvSimd.LoadVector128(w3 + 16);
            TokenRows<TPath>(xa, v0, v1, v2, v3, u0, u1, u2, u3, ref a0, ref a1, ref a2, ref a3);
            if (N.Value > 1) TokenRows<TPath>(xb, v0, v1, v2, v3, u0, u1, u2, u3, ref b0, ref b1, ref b2, ref b3);
            if (N.Value > 2) TokenRows<TPath>(xc, v0, v1, v2, v3, u0, u1, u2, u3, ref c0, ref c1, ref c2, ref c3);
            if (N.Value > 3) TokenRows<TPath>(xd, v0, v1, v2, v3, u0, u1, u2, u3, ref d0, ref d1, ref d2, ref d3);
        }
        Vector128<float> scales = Arm.AdvSimd.LoadVector128(call.RowScales + r0);
        float* y = call.Y + (nint)t0 * call.Rows + r0;
        Store(a0, a1, a2, a3, scales, call.TokenScales[t0], y);
        if (N.Value > 1) Store(b0, b1, b2, b3, scales, call.TokenScales[t0 + 1], y + call.Rows);
        if (N.Value > 2) Store(c0, c1, c2, c3, scales, call.TokenScales[t0 + 2], y + 2 * (nint)call.Rows);
        if (N.Value > 3) Store(d0, d1, d2, d3, scales, call.TokenScales[t0 + 3], y + 3 * (nint)call.Rows);
    }

    // One token's 32 codes at x against the 4 rows' 32 codes (v: columns 0..15, u: 16..31).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TokenRows<TPath>(sbyte* x, Vector128<sbyte> v0, Vector128<sbyte> v1, Vector128<sbyte> v2, Vector128<sbyte> v3,
        Vector128<sbyte> u0, Vector128<sbyte> u1, Vector128<sbyte> u2, Vector128<sbyte> u3,
        ref Vector128<int> a0, ref Vector128<int> a1, ref Vector128<int> a2, ref Vector128<int> a3) where TPath : struct, IDotPath
    {
        Vector128<sbyte> first = Arm.AdvSimd.LoadVector128(x), second = Arm.AdvSimd.LoadVector128(x + 16);
        a0 = TPath.Add(TPath.Add(a0, v0, first), u0, second);
        a1 = TPath.Add(TPath.Add(a1, v1, first), u1, second);
        a2 = TPath.Add(TPath.Add(a2, v2, first), u2, second);
        a3 = TPath.Add(TPath.Add(a3, v3, first), u3, second);
    }

    // y[i] = s_x · (0 + s_w[i] · acc_i), acc_i the sum of a_i's 4 lanes (rows i < 4)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector128<int> a0, Vector128<int> a1, Vector128<int> a2, Vector128<int> a3, Vector128<float> scales, float tokenScale, float* y)
    {
        Vector128<int> acc = Arm.AdvSimd.Arm64.AddPairwise(Arm.AdvSimd.Arm64.AddPairwise(a0, a1), Arm.AdvSimd.Arm64.AddPairwise(a2, a3));
        Arm.AdvSimd.Store(y, (Vector128<float>.Zero + scales * Arm.AdvSimd.ConvertToSingle(acc)) * tokenScale);
    }

    /// <summary>Σ_c w_q[c] · x_q[c] over <paramref name="columns"/> columns (a multiple of 32), two accumulators.</summary>
    private static int RowSum<TPath>(sbyte* row, sbyte* x, nint columns) where TPath : struct, IDotPath
    {
        Vector128<int> even = default, odd = default;
        nint toX = (nint)(x - row);
        for (sbyte* w = row, end = row + columns; w < end; w += 32)
        {
            even = TPath.Add(even, Arm.AdvSimd.LoadVector128(w), Arm.AdvSimd.LoadVector128(w + toX));
            odd = TPath.Add(odd, Arm.AdvSimd.LoadVector128(w + 16), Arm.AdvSimd.LoadVector128(w + toX + 16));
        }
        return Vector128.Sum(even + odd);
    }

    /// <summary>How 16 products reach 4 int32 lanes.</summary>
    private interface IDotPath
    {
        /// <summary><c>acc + (Σ of w · x over each lane's 4 bytes)</c>, in some lane order: only the lanes' total matters.</summary>
        static abstract Vector128<int> Add(Vector128<int> acc, Vector128<sbyte> w, Vector128<sbyte> x);
    }

    private readonly struct DotProductPath : IDotPath
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Add(Vector128<int> acc, Vector128<sbyte> w, Vector128<sbyte> x) => Arm.Dp.DotProduct(acc, w, x);
    }

    private readonly struct WideningMultiplyPath : IDotPath
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Add(Vector128<int> acc, Vector128<sbyte> w, Vector128<sbyte> x) =>
            // the upper halves first: the lower halves' use is then the last, which spares the JIT a register copy each
            Arm.AdvSimd.AddPairwiseWideningAndAdd(Arm.AdvSimd.AddPairwiseWideningAndAdd(acc, Arm.AdvSimd.MultiplyWideningUpper(w, x)),
                Arm.AdvSimd.MultiplyWideningLower(w.GetLower(), x.GetLower()));
    }

    /// <summary>Pointers and shape of one call.</summary>
    private readonly struct Int8Call(sbyte* codes, int stride, float* rowScales, sbyte* x, int xStride, float* tokenScales, float* y, int rows)
    {
        public readonly sbyte* Codes = codes; // (Rows, Stride)
        public readonly float* RowScales = rowScales; // (Rows)
        public readonly sbyte* X = x; // (tokens, XStride)
        public readonly float* TokenScales = tokenScales; // (tokens)
        public readonly float* Y = y; // (tokens, Rows)
        public readonly nint Stride = stride;
        public readonly nint XStride = xStride;
        public readonly int Rows = rows;
    }
}
