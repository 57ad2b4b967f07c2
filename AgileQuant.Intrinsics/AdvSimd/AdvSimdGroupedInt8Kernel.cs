using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd kernel for grouped 8-bit weights (<see cref="GroupedInt8Matrix"/>), twin of
/// <see cref="Scalar.ScalarGroupedInt8Kernel"/>, over the row-major codes: each group's 16 or 32 products by SDOT where
/// available, else SMULL / SMULL2 (int16 products ≤ 128·127) pairwise-added into int32 lanes (SADALP); four groups'
/// lane sums reduced together by ADDP, then in group order <c>f ← fma(s_w · s_x,g, acc, f)</c> (and
/// <c>f ← f − (o_w · s_x,g) · Σx_q</c> with offsets) and <c>y = s_x · f</c> (s_x,g the activation group scales, 1 per token).
/// </summary>
internal sealed unsafe class AdvSimdGroupedInt8Kernel : QuantizedMatMulKernel<GroupedInt8Matrix>
{
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

    private protected override void MultiplyRows(GroupedInt8Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        int groups = w.GroupCount, groupSize = w.GroupSize, vectorsPerGroup = groupSize / 16;
        float[] scales = w.ScaleArray;
        float[]? offsets = w.OffsetArray;
        sbyte[]? subScales = w.SubScaleArray, subOffsets = w.SubOffsetArray;
        fixed (sbyte* codes = w.CodeArray)
        fixed (sbyte* x = xq.Codes)
        fixed (float* groupSums = xq.GroupSumsAsFloat)
        fixed (float* groupScales = xq.GroupScales)
        {
            for (int r = rowBegin; r < rowEnd; r++)
            {
                sbyte* row = codes + (nint)r * w.RowStride;
                for (int t = 0; t < xq.Tokens; t++)
                {
                    sbyte* xt = x + (nint)t * xq.Stride;
                    float* sums = groupSums + (nint)t * xq.GroupCount, xscales = groupScales + (nint)t * xq.GroupCount;
                    float f = 0f;
                    int g = 0;
                    for (; g + 4 <= groups; g += 4)
                    {
                        Vector128<int> acc = FourGroupSums(_useDotProduct, row + g * groupSize, xt + g * groupSize, groupSize, vectorsPerGroup);
                        for (int j = 0; j < 4; j++) f = Fold(w, r, g + j, acc.GetElement(j), f, scales, subScales, offsets, subOffsets, sums, xscales);
                    }
                    for (; g < groups; g++)
                        f = Fold(w, r, g, Vector128.Sum(GroupLanes(_useDotProduct, row + g * groupSize, xt + g * groupSize, vectorsPerGroup)), f, scales, subScales, offsets, subOffsets, sums, xscales);
                    y[(nint)t * w.Rows + r] = xq.Scales[t] * f;
                }
            }
        }
    }

    // f ← fma(s_w[r, g] · s_x,g, acc, f), then with offsets f ← fma(−(o_w[r, g] · s_x,g), Σx_q over g, f): the scalar twin's steps.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Fold(GroupedInt8Matrix w, int r, int g, int acc, float f, float[] scales, sbyte[]? subScales, float[]? offsets, sbyte[]? subOffsets,
        float* sums, float* xscales)
    {
        f = MathF.FusedMultiplyAdd(Factor(w, r, g, scales, subScales) * xscales[g], acc, f);
        return offsets is null ? f : MathF.FusedMultiplyAdd(-(Factor(w, r, g, offsets, subOffsets) * xscales[g]), sums[g], f);
    }

    // The group's factor: per group, or super-block float · int8 sub (one rounding), as GroupedInt8Matrix.Scale/Offset.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Factor(GroupedInt8Matrix w, int r, int g, float[] values, sbyte[]? sub) => sub is null
        ? values[(nint)r * w.GroupCount + g]
        : values[(nint)r * w.SuperBlockCount + (g >> w.SuperBlockShift)] * sub[(nint)r * w.GroupCount + g];

    // [Σ group g, Σ g+1, Σ g+2, Σ g+3] of w · x: each group's lane sums, reduced by two levels of ADDP.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> FourGroupSums(bool useDotProduct, sbyte* w, sbyte* x, int groupSize, int vectorsPerGroup)
    {
        Vector128<int> a0 = GroupLanes(useDotProduct, w, x, vectorsPerGroup);
        Vector128<int> a1 = GroupLanes(useDotProduct, w + groupSize, x + groupSize, vectorsPerGroup);
        Vector128<int> a2 = GroupLanes(useDotProduct, w + 2 * groupSize, x + 2 * groupSize, vectorsPerGroup);
        Vector128<int> a3 = GroupLanes(useDotProduct, w + 3 * groupSize, x + 3 * groupSize, vectorsPerGroup);
        return Arm.AdvSimd.Arm64.AddPairwise(Arm.AdvSimd.Arm64.AddPairwise(a0, a1), Arm.AdvSimd.Arm64.AddPairwise(a2, a3));
    }

    // int32 lanes whose sum is Σ w · x over `vectors` × 16 columns.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> GroupLanes(bool useDotProduct, sbyte* w, sbyte* x, int vectors)
    {
        Vector128<int> sum = Vector128<int>.Zero;
        for (int v = 0; v < vectors; v++)
        {
            Vector128<sbyte> wv = Arm.AdvSimd.LoadVector128(w + v * 16), xv = Arm.AdvSimd.LoadVector128(x + v * 16);
            if (useDotProduct)
            {
                sum = Arm.Dp.DotProduct(sum, wv, xv);
                continue;
            }
            sum = Arm.AdvSimd.AddPairwiseWideningAndAdd(sum, Arm.AdvSimd.MultiplyWideningLower(wv.GetLower(), xv.GetLower()));
            sum = Arm.AdvSimd.AddPairwiseWideningAndAdd(sum, Arm.AdvSimd.MultiplyWideningUpper(wv, xv));
        }
        return sum;
    }
}
