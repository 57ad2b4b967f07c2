using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd W8A8 / W8A4 kernel, twin of <see cref="Scalar.ScalarInt8Kernel"/>:
/// <c>acc = Σ_c w_q · x_q</c> by SDOT where available, else SMULL / SMULL2 (int16 products ≤ 128·127)
/// pairwise-added into int32 lanes (SADALP); then <c>y = s_x · s_w · acc</c>.
/// </summary>
internal sealed unsafe class AdvSimdInt8Kernel : QuantizedMatMulKernel<Int8RowMatrix>
{
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

    private protected override void MultiplyRows(Int8RowMatrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        Span<int> acc = stackalloc int[1];
        fixed (sbyte* codes = w.CodeArray)
        fixed (sbyte* x = xq.Codes)
        {
            for (int r = rowBegin; r < rowEnd; r++)
                for (int t = 0; t < xq.Tokens; t++)
                {
                    acc[0] = RowSum(_useDotProduct, codes + (nint)r * w.RowStride, w.RowStride / 16, x + (nint)t * xq.Stride);
                    y[(nint)t * w.Rows + r] = GroupEpilogue.Dequantize(xq.Scales[t], w.Scales.Slice(r, 1), acc);
                }
        }
    }

    /// <summary>Σ_c w_q[c] · x_q[c] over <paramref name="blocks"/> blocks of 16 columns.</summary>
    internal static int RowSum(bool useDotProduct, sbyte* row, int blocks, sbyte* x)
    {
        Vector128<int> sum = Vector128<int>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            Vector128<sbyte> w = Arm.AdvSimd.LoadVector128(row + b * 16), xb = Arm.AdvSimd.LoadVector128(x + b * 16);
            if (useDotProduct)
            {
                sum = Arm.Dp.DotProduct(sum, w, xb);
                continue;
            }
            sum = Arm.AdvSimd.AddPairwiseWideningAndAdd(sum, Arm.AdvSimd.MultiplyWideningLower(w.GetLower(), xb.GetLower()));
            sum = Arm.AdvSimd.AddPairwiseWideningAndAdd(sum, Arm.AdvSimd.MultiplyWideningUpper(w, xb));
        }
        return Vector128.Sum(sum);
    }
}
