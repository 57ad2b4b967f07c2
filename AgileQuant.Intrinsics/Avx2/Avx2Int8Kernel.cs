using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 W8A8 / W8A4 kernel, twin of <see cref="Scalar.ScalarInt8Kernel"/>: per 32 columns,
/// <c>vpmaddubsw(|w|, sign(x, w))</c> (u8 × s8 pair sums ≤ 2·128·127 &lt; 2^15: no int16 saturation because
/// activation codes never reach −128) and <c>vpmaddwd</c> by 1 into int32 lanes:
/// <c>acc = Σ_c w_q · x_q</c>, then <c>y = s_x · s_w · acc</c>.
/// </summary>
public sealed unsafe class Avx2Int8Kernel : QuantizedMatMulKernel<Int8RowMatrix>
{
    private const int TokenTile = 4;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W8A8) or 4 (W8A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2Int8Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2") { }

    /// <inheritdoc />
    public override string Name => $"w8a{ActivationBits}-avx2";

    private protected override int GroupSize(Int8RowMatrix weights) => weights.RowStride;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    private protected override void MultiplyRows(Int8RowMatrix w, QuantizedActivations xq, float* y, int rowBegin, int rowEnd)
    {
        int* acc = stackalloc int[TokenTile];
        fixed (sbyte* codes = w.CodeArray)
        fixed (sbyte* x = xq.Codes)
        {
            for (int r = rowBegin; r < rowEnd; r++)
                for (int t0 = 0; t0 < xq.Tokens; t0 += TokenTile)
                {
                    int n = Math.Min(TokenTile, xq.Tokens - t0);
                    RowSums(codes + (nint)r * w.RowStride, w.RowStride / 32, x + (nint)t0 * xq.Stride, xq.Stride, n, acc);
                    for (int j = 0; j < n; j++)
                        y[(nint)(t0 + j) * w.Rows + r] = GroupEpilogue.Dequantize(xq.Scales[t0 + j], w.Scales.Slice(r, 1), new ReadOnlySpan<int>(acc + j, 1));
                }
        }
    }

    /// <summary>acc[j] = Σ_c w_q[c] · x_q[j, c] for n ≤ 4 tokens (stride xStride).</summary>
    internal static void RowSums(sbyte* row, int blocks, sbyte* x, nint xStride, int n, int* acc)
    {
        switch (n)
        {
            case 4: RowSums<FourTokens>(row, blocks, x, xStride, acc); break;
            case 3: RowSums<ThreeTokens>(row, blocks, x, xStride, acc); break;
            case 2: RowSums<TwoTokens>(row, blocks, x, xStride, acc); break;
            default: RowSums<OneToken>(row, blocks, x, xStride, acc); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowSums<N>(sbyte* row, int blocks, sbyte* x, nint xStride, int* acc) where N : struct, ITokenCount
    {
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++)
        {
            Vector256<sbyte> w = X86.Avx.LoadVector256(row + b * 32);
            Vector256<byte> magnitude = X86.Avx2.Abs(w);
            sbyte* xb = x + b * 32;
            a0 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(X86.Avx.LoadVector256(xb), w)), ones);
            if (N.Value > 1) a1 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(X86.Avx.LoadVector256(xb + xStride), w)), ones);
            if (N.Value > 2) a2 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(X86.Avx.LoadVector256(xb + 2 * xStride), w)), ones);
            if (N.Value > 3) a3 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(magnitude, X86.Avx2.Sign(X86.Avx.LoadVector256(xb + 3 * xStride), w)), ones);
        }
        acc[0] = Vector256.Sum(a0);
        if (N.Value > 1) acc[1] = Vector256.Sum(a1);
        if (N.Value > 2) acc[2] = Vector256.Sum(a2);
        if (N.Value > 3) acc[3] = Vector256.Sum(a3);
    }
}
