using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics.Scalar;

/// <summary>Scalar FP32 kernel: the specification the SIMD FP32 kernels are tested against.</summary>
internal sealed class ScalarFp32Kernel : IMatMulKernel
{
    /// <inheritdoc />
    public string Name => "fp32-scalar";

    /// <inheritdoc />
    public bool Supports(IWeightMatrix weights) => weights is Fp32Matrix;

    /// <inheritdoc />
    public void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        Fp32Matrix w = MatMulArguments.Validate<Fp32Matrix>(Name, weights, x.Length, y.Length, tokens);
        // y (tokens, Rows) = x (tokens, Cols) · Wᵀ
        for (int t = 0; t < tokens; t++)
        {
            ReadOnlySpan<float> xt = x.Slice(t * w.Cols, w.Cols);
            for (int r = 0; r < w.Rows; r++)
            {
                ReadOnlySpan<float> wr = w.Row(r);
                float sum = 0f;
                for (int c = 0; c < wr.Length; c++) sum += xt[c] * wr[c];
                y[t * w.Rows + r] = sum;
            }
        }
    }
}
