namespace AgileQuant.Intrinsics.Trip;

/// <summary>
/// A kernel capability: TRIP, the fused pass of Agile-Quant (arXiv 2312.05693) that gathers rows of X, quantizes each
/// with the tensor's static scale at that token's bit width (8, or 4 for lower-bit tokens), multiplies the codes by
/// integer weights with exact int32 accumulation and dequantizes:
/// <c>y[rows[k], r] = s_k · Σ_g s_w[r, g] · Σ_{c∈g} (w_q[r, c] − z[r, g]) · q[k, c]</c>,
/// <c>q[k, c] = clamp(round(x[rows[k], c] / s_k), −m_k, m_k)</c>, (s_k, m_k) = (s₄, 7) for lower-bit rows, (s₈, 127) otherwise.
/// </summary>
/// <remarks>
/// <see cref="KernelSet"/> offers it through its integer kernels' packed-weight inner loops (each instruction set's
/// own); <see cref="TripMatMul.Multiply(IWeightMatrix, ReadOnlySpan{float}, ReadOnlySpan{int}, ReadOnlySpan{bool}, StaticActivationScales, Span{float}, int)"/>
/// is the reference pass it falls back to where a kernel has no such route.
/// </remarks>
public interface ITripKernel
{
    /// <summary>Whether <see cref="MatMulTrip"/> multiplies by <paramref name="weights"/>.</summary>
    bool SupportsTrip(IWeightMatrix weights);

    /// <summary>Computes <c>y[rows[k], ·]</c> for each gathered row k (see the interface summary); y's other rows are not written.</summary>
    /// <param name="weights">W (Rows, Cols).</param>
    /// <param name="x">X (n, Cols), row-major.</param>
    /// <param name="rows">Rows of X to multiply, each in [0, n).</param>
    /// <param name="lowBit">Per row of X (n), or empty: true = 4-bit codes with s₄.</param>
    /// <param name="scales">The tensor's static scales.</param>
    /// <param name="y">Y (n, Rows), row-major.</param>
    void MatMulTrip(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit, StaticActivationScales scales, Span<float> y);
}
