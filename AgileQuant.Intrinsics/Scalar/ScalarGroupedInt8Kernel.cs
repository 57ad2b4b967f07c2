using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;

namespace AgileQuant.Intrinsics.Scalar;

/// <summary>
/// Scalar kernel for grouped 8-bit weights with 8- or 4-bit activations, the specification of the SIMD ones:
/// <c>acc[t, r, g] = Σ_{c∈g} w_q[r, c] · x_q[t, c]</c> in exact int32, then, in group order,
/// <c>f ← fma(s_w[r, g] · s_x[t, g], acc, f)</c> and with offsets <c>f ← fma(−(o_w[r, g] · s_x[t, g]), Σ_{c∈g} x_q[t, c], f)</c>
/// (each product and fma one rounding), and <c>y[t, r] = s_x[t] · f</c>: i.e. <c>y = s_x · Σ_g s_x,g · (s_w · acc − o_w · Σx_q)</c>,
/// where s_x[t, g] are the per-group activation scales (all 1 with per-token scales) and s_x[t] the token scale (1 with group scales).
/// </summary>
internal sealed unsafe class ScalarGroupedInt8Kernel : QuantizedMatMulKernel<GroupedInt8Matrix>
{
    /// <summary>Creates the kernel for 8-bit or 4-bit activations; runs on the calling thread.</summary>
    public ScalarGroupedInt8Kernel(int activationBits = 8) : base(activationBits, threads: 1, isSupported: true, requirement: "nothing") { }

    /// <inheritdoc />
    public override string Name => $"w8g-a{ActivationBits}-scalar";

    // Activation groups are the weight groups: their sums for the offsets, their scales with per-group activation scales.
    private protected override int GroupSize(GroupedInt8Matrix weights) => weights.GroupSize;

    private protected override bool TakesGroupScales(GroupedInt8Matrix weights) => true;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    private protected override void MultiplyRows(GroupedInt8Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        sbyte[] codes = w.CodeArray; // (Rows, RowStride)
        for (int r = rowBegin; r < rowEnd; r++)
            for (int t = 0; t < xq.Tokens; t++)
            {
                ReadOnlySpan<sbyte> x = xq.Codes.AsSpan(t * xq.Stride, w.Cols);
                float f = 0f;
                for (int g = 0; g < w.GroupCount; g++)
                {
                    float groupScale = xq.GroupScales[t * xq.GroupCount + g];
                    f = MathF.FusedMultiplyAdd(w.Scale(r, g) * groupScale, GroupSum(w, codes, r, g, x), f);
                    if (w.HasOffsets) f = MathF.FusedMultiplyAdd(-(w.Offset(r, g) * groupScale), xq.GroupSumsAsFloat[t * xq.GroupCount + g], f);
                }
                y[(nint)t * w.Rows + r] = xq.Scales[t] * f;
            }
    }

    /// <summary><c>Σ_{c∈g} w_q[r, c] · x_q[c]</c> over group g of row r, <paramref name="codes"/> the matrix's row-major codes.</summary>
    internal static int GroupSum(GroupedInt8Matrix w, ReadOnlySpan<sbyte> codes, int r, int g, ReadOnlySpan<sbyte> x)
    {
        int sum = 0, begin = g * w.GroupSize, end = Math.Min(w.Cols, begin + w.GroupSize);
        ReadOnlySpan<sbyte> row = codes.Slice(r * w.RowStride, w.RowStride);
        for (int c = begin; c < end; c++) sum += row[c] * x[c];
        return sum;
    }
}
