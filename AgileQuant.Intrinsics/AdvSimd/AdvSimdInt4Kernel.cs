using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd W4A8 / W4A4 kernel, twin of <see cref="Scalar.ScalarInt4Kernel"/>. Per 32-column block the
/// 16 packed bytes split into low / high nibbles (even / odd columns, 0..15) against activations stored
/// even-then-odd per 64 columns, giving <c>raw = Σ nibble · x_q</c> per group by one of three paths:
/// SDOT (<c>Dp.DotProduct</c>, Cortex-A76 and later); without SDOT and 8-bit activations, SMLAL into int16
/// lanes (≤ 16 products of ≤ 1905 per lane per group of ≤ 128: no overflow); without SDOT and 4-bit
/// activations, the paper's packed 4-bit multiplier (docs/method.md §4): one 8-bit MUL of nibble × (x_q + 8)
/// yields 16 products ≤ 225, split with an 0x00FF mask and a shift into two 16-bit fields that
/// accumulate, then <c>raw = Σ nibble · (x_q + 8) − 8 · Σ nibble</c>. Per group
/// <c>acc = raw − z · Σ x_q</c>, then the shared float epilogue.
/// </summary>
internal sealed unsafe class AdvSimdInt4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    private readonly Int4DotPath _path;

    /// <summary>Whether this CPU and runtime allow the kernel (64-bit ARM AdvSimd enabled).</summary>
    public static bool IsSupported => Arm.AdvSimd.Arm64.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not supported.</summary>
    /// <param name="activationBits">8 (W4A8) or 4 (W4A4).</param>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="useDotProduct">Use SDOT (default: when <c>Dp.IsSupported</c>); false forces the paths for cores without it.</param>
    public AdvSimdInt4Kernel(int activationBits = 8, int threads = 0, bool? useDotProduct = null)
        : base(activationBits, threads, IsSupported && (useDotProduct != true || Arm.Dp.IsSupported), "64-bit ARM AdvSimd (and Dp for SDOT)")
    {
        _path = useDotProduct ?? Arm.Dp.IsSupported ? Int4DotPath.DotProduct
            : activationBits == 4 ? Int4DotPath.PackedMultiplier
            : Int4DotPath.WideningMultiply;
    }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-advsimd-" + _path switch
    {
        Int4DotPath.DotProduct => "sdot",
        Int4DotPath.PackedMultiplier => "mul4",
        _ => "smlal",
    };

    private protected override int GroupSize(PackedInt4Matrix weights) => weights.GroupSize;

    private protected override ActivationOrder Order => ActivationOrder.NibblePairs;

    private protected override void MultiplyRows(PackedInt4Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        int groups = w.GroupCount;
        int* acc = stackalloc int[groups];
        var tokenAcc = new Span<int>(acc, groups);
        fixed (byte* packed = w.PackedArray)
        fixed (sbyte* codes = xq.Codes)
        {
            for (int r = rowBegin; r < rowEnd; r++)
                for (int t = 0; t < xq.Tokens; t++)
                {
                    RawGroupSums(_path, packed + (nint)r * w.RowBytes, w.RowBytes / 16, w.GroupSize / 32, codes + (nint)t * xq.Stride, acc, groups);
                    for (int g = 0; g < groups; g++) tokenAcc[g] -= w.ZeroPoint(r, g) * xq.GroupSums[t * groups + g];
                    y[(nint)t * w.Rows + r] = GroupEpilogue.Dequantize(xq.Scales[t], w.Scales.Slice(r * groups, groups), tokenAcc);
                }
        }
    }

    /// <summary>acc[g] = Σ_{c∈g} nibble[c] · x_q[c] for one row and token (x in nibble-pair order).</summary>
    internal static void RawGroupSums(Int4DotPath path, byte* row, int blocks, int blocksPerGroup, sbyte* x, int* acc, int groups)
    {
        Vector128<byte> lowNibbles = Vector128.Create((byte)0x0F);
        for (int g = 0, b = 0; g < groups; g++)
        {
            int end = Math.Min(blocks, b + blocksPerGroup);
            acc[g] = path switch
            {
                Int4DotPath.DotProduct => DotProductGroup(row, x, ref b, end, lowNibbles),
                Int4DotPath.PackedMultiplier => PackedMultiplierGroup(row, x, ref b, end, lowNibbles),
                _ => WideningMultiplyGroup(row, x, ref b, end, lowNibbles),
            };
        }
    }

    // Activations for the even columns of 32-column block b: 64-column blocks hold 32 evens, then 32 odds.
    private static sbyte* EvenColumns(sbyte* x, int b) => x + (b >> 1) * 64 + (b & 1) * 16;

    // Σ nibble · x by SDOT: four int8 products per int32 lane per instruction.
    private static int DotProductGroup(byte* row, sbyte* x, ref int b, int end, Vector128<byte> lowNibbles)
    {
        Vector128<int> sum = Vector128<int>.Zero;
        for (; b < end; b++)
        {
            Vector128<byte> pairs = Arm.AdvSimd.LoadVector128(row + b * 16);
            sum = Arm.Dp.DotProduct(sum, (pairs & lowNibbles).AsSByte(), Arm.AdvSimd.LoadVector128(EvenColumns(x, b)));
            sum = Arm.Dp.DotProduct(sum, Arm.AdvSimd.ShiftRightLogical(pairs, 4).AsSByte(), Arm.AdvSimd.LoadVector128(EvenColumns(x, b) + 32));
        }
        return Vector128.Sum(sum);
    }

    // Σ nibble · x by SMLAL / SMLAL2 into int16 lanes (each lane gets ≤ 4 products of ≤ 15·127 per block).
    private static int WideningMultiplyGroup(byte* row, sbyte* x, ref int b, int end, Vector128<byte> lowNibbles)
    {
        Vector128<short> sum = Vector128<short>.Zero;
        for (; b < end; b++)
        {
            Vector128<byte> pairs = Arm.AdvSimd.LoadVector128(row + b * 16);
            Vector128<sbyte> even = (pairs & lowNibbles).AsSByte(), odd = Arm.AdvSimd.ShiftRightLogical(pairs, 4).AsSByte();
            Vector128<sbyte> xEven = Arm.AdvSimd.LoadVector128(EvenColumns(x, b)), xOdd = Arm.AdvSimd.LoadVector128(EvenColumns(x, b) + 32);
            sum = Arm.AdvSimd.MultiplyWideningLowerAndAdd(sum, even.GetLower(), xEven.GetLower());
            sum = Arm.AdvSimd.MultiplyWideningUpperAndAdd(sum, even, xEven);
            sum = Arm.AdvSimd.MultiplyWideningLowerAndAdd(sum, odd.GetLower(), xOdd.GetLower());
            sum = Arm.AdvSimd.MultiplyWideningUpperAndAdd(sum, odd, xOdd);
        }
        return Arm.AdvSimd.Arm64.AddAcrossWidening(sum).ToScalar();
    }

    // The packed 4-bit multiplier: nibble × (x + 8) in 8-bit lanes (≤ 225), split into 16-bit fields.
    private static int PackedMultiplierGroup(byte* row, sbyte* x, ref int b, int end, Vector128<byte> lowNibbles)
    {
        Vector128<ushort> fieldMask = Vector128.Create((ushort)0x00FF);
        Vector128<byte> offset = Vector128.Create((byte)8);
        Vector128<ushort> products = Vector128<ushort>.Zero, nibbleSum = Vector128<ushort>.Zero;
        for (; b < end; b++)
        {
            Vector128<byte> pairs = Arm.AdvSimd.LoadVector128(row + b * 16);
            Vector128<byte> even = pairs & lowNibbles, odd = Arm.AdvSimd.ShiftRightLogical(pairs, 4);
            Vector128<byte> xEven = Arm.AdvSimd.LoadVector128(EvenColumns(x, b)).AsByte() + offset;
            Vector128<byte> xOdd = Arm.AdvSimd.LoadVector128(EvenColumns(x, b) + 32).AsByte() + offset;
            Vector128<ushort> p = Arm.AdvSimd.Multiply(even, xEven).AsUInt16();
            products += p & fieldMask;
            products = Arm.AdvSimd.ShiftRightLogicalAdd(products, p, 8);
            p = Arm.AdvSimd.Multiply(odd, xOdd).AsUInt16();
            products += p & fieldMask;
            products = Arm.AdvSimd.ShiftRightLogicalAdd(products, p, 8);
            nibbleSum = Arm.AdvSimd.AddPairwiseWideningAndAdd(nibbleSum, even);
            nibbleSum = Arm.AdvSimd.AddPairwiseWideningAndAdd(nibbleSum, odd);
        }
        // ≤ 4 blocks × 4 products × 225 per 16-bit lane: no overflow.
        int unsignedSum = (int)Arm.AdvSimd.Arm64.AddAcrossWidening(products).ToScalar();
        int nibbles = (int)Arm.AdvSimd.Arm64.AddAcrossWidening(nibbleSum).ToScalar();
        return unsignedSum - 8 * nibbles;
    }
}

/// <summary>How <see cref="AdvSimdInt4Kernel"/> forms its int8 dot products.</summary>
internal enum Int4DotPath
{
    /// <summary>SDOT (ARMv8.2 dot product).</summary>
    DotProduct,

    /// <summary>SMLAL widening multiply-accumulate into int16 (cores without SDOT, 8-bit activations).</summary>
    WideningMultiply,

    /// <summary>The paper's packed 4-bit multiplier (cores without SDOT, 4-bit activations).</summary>
    PackedMultiplier,
}
