using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2 W4A8 / W4A4 kernel, twin of <see cref="Scalar.ScalarInt4Kernel"/>: per 32-column block, the 16
/// packed bytes are split into low / high nibbles (even / odd columns, 0..15 unsigned) and multiplied with
/// the activations (stored even-then-odd) by <c>vpmaddubsw</c> (u8 × s8 pair sums ≤ 2·15·127, no int16
/// saturation) and <c>vpmaddwd</c> by 1 into int32 lanes; per group
/// <c>acc = Σ nibble · x_q − z · Σ x_q</c>, then the shared float epilogue.
/// </summary>
public sealed unsafe class Avx2Int4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    /// <summary>Tokens that share one unpack of a weight block.</summary>
    private const int TokenTile = 4;

    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="activationBits">8 (W4A8) or 4 (W4A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2Int4Kernel(int activationBits = 8, int threads = 0) : base(activationBits, threads, IsSupported, "AVX2") { }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-avx2";

    private protected override int GroupSize(PackedInt4Matrix weights) => weights.GroupSize;

    private protected override ActivationOrder Order => ActivationOrder.NibblePairs;

    private protected override void MultiplyRows(PackedInt4Matrix w, QuantizedActivations xq, float* y, int rowBegin, int rowEnd)
    {
        int groups = w.GroupCount;
        int* acc = stackalloc int[TokenTile * groups];
        fixed (byte* packed = w.PackedArray)
        fixed (sbyte* codes = xq.Codes)
        {
            for (int r = rowBegin; r < rowEnd; r++)
                for (int t0 = 0; t0 < xq.Tokens; t0 += TokenTile)
                {
                    int n = Math.Min(TokenTile, xq.Tokens - t0);
                    RawGroupSums(packed + (nint)r * w.RowBytes, w.RowBytes / 16, w.GroupSize / 32, codes + (nint)t0 * xq.Stride, xq.Stride, n, acc, groups);
                    for (int j = 0; j < n; j++)
                    {
                        var tokenAcc = new Span<int>(acc + j * groups, groups);
                        for (int g = 0; g < groups; g++) tokenAcc[g] -= w.ZeroPoint(r, g) * xq.GroupSums[(t0 + j) * groups + g];
                        y[(nint)(t0 + j) * w.Rows + r] = GroupEpilogue.Dequantize(xq.Scales[t0 + j], w.Scales.Slice(r * groups, groups), tokenAcc);
                    }
                }
        }
    }

    /// <summary>acc[j · groups + g] = Σ_{c∈g} nibble[c] · x_q[j, c] for n ≤ 4 tokens (x in nibble-pair order, stride xStride).</summary>
    internal static void RawGroupSums(byte* row, int blocks, int blocksPerGroup, sbyte* x, nint xStride, int n, int* acc, int groups)
    {
        switch (n)
        {
            case 4: RawGroupSums<FourTokens>(row, blocks, blocksPerGroup, x, xStride, acc, groups); break;
            case 3: RawGroupSums<ThreeTokens>(row, blocks, blocksPerGroup, x, xStride, acc, groups); break;
            case 2: RawGroupSums<TwoTokens>(row, blocks, blocksPerGroup, x, xStride, acc, groups); break;
            default: RawGroupSums<OneToken>(row, blocks, blocksPerGroup, x, xStride, acc, groups); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RawGroupSums<N>(byte* row, int blocks, int blocksPerGroup, sbyte* x, nint xStride, int* acc, int groups)
        where N : struct, ITokenCount
    {
        Vector128<byte> lowNibbles = Vector128.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        for (int g = 0, b = 0; g < groups; g++)
        {
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int end = Math.Min(blocks, b + blocksPerGroup); b < end; b++)
            {
                Vector128<byte> pairs = X86.Sse2.LoadVector128(row + b * 16);
                Vector128<byte> odd = X86.Sse2.ShiftRightLogical(pairs.AsUInt16(), 4).AsByte() & lowNibbles;
                Vector256<byte> nibbles = Vector256.Create(pairs & lowNibbles, odd);
                sbyte* xb = x + b * 32;
                a0 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(nibbles, X86.Avx.LoadVector256(xb)), ones);
                if (N.Value > 1) a1 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(nibbles, X86.Avx.LoadVector256(xb + xStride)), ones);
                if (N.Value > 2) a2 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(nibbles, X86.Avx.LoadVector256(xb + 2 * xStride)), ones);
                if (N.Value > 3) a3 += X86.Avx2.MultiplyAddAdjacent(X86.Avx2.MultiplyAddAdjacent(nibbles, X86.Avx.LoadVector256(xb + 3 * xStride)), ones);
            }
            acc[g] = Vector256.Sum(a0);
            if (N.Value > 1) acc[groups + g] = Vector256.Sum(a1);
            if (N.Value > 2) acc[2 * groups + g] = Vector256.Sum(a2);
            if (N.Value > 3) acc[3 * groups + g] = Vector256.Sum(a3);
        }
    }
}
