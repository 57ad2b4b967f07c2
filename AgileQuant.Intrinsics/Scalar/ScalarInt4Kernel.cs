using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;

namespace AgileQuant.Intrinsics.Scalar;

/// <summary>
/// Scalar W4A8 / W4A4 kernel, the specification of the SIMD int4 kernels:
/// <c>acc[t, r, g] = Σ_{c∈g} (nibble[r, c] − z[r, g]) · x_q[t, c]</c> in exact int32, then
/// <c>y[t, r] = s_x[t] · Σ_g s_w[r, g] · acc[t, r, g]</c>; with per-group activation scales (a matrix that
/// <see cref="PackedInt4Matrix.TakesActivationGroupScales"/>), <c>y[t, r] = Σ_g (s_w[r, g] · s_x[t, g]) · acc[t, r, g]</c>.
/// </summary>
internal sealed unsafe class ScalarInt4Kernel : QuantizedMatMulKernel<PackedInt4Matrix>
{
    /// <summary>Creates the kernel for 8-bit (W4A8) or 4-bit (W4A4) activations; runs on the calling thread.</summary>
    public ScalarInt4Kernel(int activationBits = 8) : base(activationBits, threads: 1, isSupported: true, requirement: "nothing") { }

    /// <inheritdoc />
    public override string Name => $"w4a{ActivationBits}-scalar";

    private protected override int GroupSize(PackedInt4Matrix weights) => weights.GroupSize;

    private protected override bool TakesGroupScales(PackedInt4Matrix weights) => weights.TakesActivationGroupScales;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    private protected override void MultiplyRows(PackedInt4Matrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        Span<int> acc = stackalloc int[w.GroupCount];
        for (int r = rowBegin; r < rowEnd; r++)
            for (int t = 0; t < xq.Tokens; t++)
            {
                GroupAccumulators(w, r, xq.Codes.AsSpan(t * xq.Stride, w.Cols), acc);
                ReadOnlySpan<float> weightScales = w.Scales.Slice(r * w.GroupCount, w.GroupCount);
                y[(nint)t * w.Rows + r] = xq.HasGroupScales
                    ? GroupEpilogue.Dequantize(xq.Scales[t], weightScales, xq.GroupScales.AsSpan(t * xq.GroupCount, w.GroupCount), acc)
                    : GroupEpilogue.Dequantize(xq.Scales[t], weightScales, acc);
            }
    }

    /// <summary><c>acc[g] = Σ_{c∈g} (nibble[r, c] − z[r, g]) · x_q[c]</c> for row r; x_q in column order.</summary>
    internal static void GroupAccumulators(PackedInt4Matrix w, int r, ReadOnlySpan<sbyte> xq, Span<int> acc)
    {
        for (int g = 0; g < w.GroupCount; g++)
        {
            int zero = w.ZeroPoint(r, g), sum = 0;
            for (int c = g * w.GroupSize; c < Math.Min(w.Cols, (g + 1) * w.GroupSize); c++) sum += (w.Nibble(r, c) - zero) * xq[c];
            acc[g] = sum;
        }
    }
}
