using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Quantization;

namespace AgileQuant.Intrinsics.Scalar;

/// <summary>
/// Scalar W8A8 / W8A4 kernel, the specification of the SIMD int8 kernels:
/// <c>acc[t, r] = Σ_c w_q[r, c] · x_q[t, c]</c> in exact int32, then <c>y[t, r] = s_x[t] · s_w[r] · acc[t, r]</c>.
/// </summary>
internal sealed unsafe class ScalarInt8Kernel : QuantizedMatMulKernel<Int8RowMatrix>
{
    /// <summary>Creates the kernel for 8-bit (W8A8) or 4-bit (W8A4) activations; runs on the calling thread.</summary>
    public ScalarInt8Kernel(int activationBits = 8) : base(activationBits, threads: 1, isSupported: true, requirement: "nothing") { }

    /// <inheritdoc />
    public override string Name => $"w8a{ActivationBits}-scalar";

    private protected override int GroupSize(Int8RowMatrix weights) => weights.RowStride;

    private protected override ActivationOrder Order => ActivationOrder.Plain;

    private protected override void MultiplyRows(Int8RowMatrix w, QuantizedActivations xq, object? callState, float* y, int rowBegin, int rowEnd)
    {
        Span<int> acc = stackalloc int[1];
        for (int r = rowBegin; r < rowEnd; r++)
            for (int t = 0; t < xq.Tokens; t++)
            {
                acc[0] = RowAccumulator(w, r, xq.Codes.AsSpan(t * xq.Stride, w.Cols));
                y[(nint)t * w.Rows + r] = GroupEpilogue.Dequantize(xq.Scales[t], w.Scales.Slice(r, 1), acc);
            }
    }

    /// <summary><c>Σ_c w_q[r, c] · x_q[c]</c> for row r.</summary>
    internal static int RowAccumulator(Int8RowMatrix w, int r, ReadOnlySpan<sbyte> xq)
    {
        int sum = 0;
        for (int c = 0; c < w.Cols; c++) sum += w.Code(r, c) * xq[c];
        return sum;
    }
}
