namespace AgileQuant.Intrinsics;

/// <summary>
/// A weight matrix W of shape (Rows, Cols) in some storage format, prepared once at load time and
/// immutable afterwards (shared across threads and inference contexts).
/// </summary>
public interface IWeightMatrix
{
    /// <summary>Number of output rows (out_features).</summary>
    int Rows { get; }

    /// <summary>Number of input columns (in_features).</summary>
    int Cols { get; }

    /// <summary>Bytes of weight data a kernel streams to multiply by this matrix once.</summary>
    long ByteCount { get; }
}

/// <summary>
/// A matrix-multiplication kernel for one weight format:
/// <c>y[t, r] = Σ_c x[t, c] · W[r, c]</c>, i.e. <c>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ</c>.
/// </summary>
/// <remarks>
/// One token is a GEMV (decode), many tokens a GEMM (prefill). Implementations exist per ISA; every
/// SIMD implementation has a scalar twin that defines its result.
/// </remarks>
public interface IMatMulKernel
{
    /// <summary>Short name of the kernel, e.g. <c>fp32-avx2</c>.</summary>
    string Name { get; }

    /// <summary>Whether this kernel can multiply by <paramref name="weights"/>.</summary>
    bool Supports(IWeightMatrix weights);

    /// <summary>
    /// Computes <c>y[t, r] = Σ_c x[t, c] · W[r, c]</c> for <paramref name="tokens"/> rows of x.
    /// </summary>
    /// <param name="weights">W (Rows, Cols).</param>
    /// <param name="x">X (tokens, Cols), row-major.</param>
    /// <param name="y">Y (tokens, Rows), row-major; overwritten.</param>
    /// <param name="tokens">Number of rows in X and Y.</param>
    void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens);

    /// <summary>
    /// Readies <paramref name="weights"/> for this kernel once, when a model is built: a kernel that streams its own
    /// layout of the format repacks the matrix into it where that copy replaces the stored one (the row-major copy is
    /// then dropped, so the weights are held once). Idempotent and thread-safe; a matrix never prepared is prepared on
    /// its first multiplication. The default does nothing (kernels that read the stored layout, or whose layout is an
    /// extra copy built on first use, as the FP32 panels).
    /// </summary>
    /// <param name="weights">W (Rows, Cols), in a format this kernel <see cref="Supports"/> (others are ignored).</param>
    void Prepare(IWeightMatrix weights) { }
}
