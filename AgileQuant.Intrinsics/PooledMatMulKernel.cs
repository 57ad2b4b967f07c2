using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Base of the kernels for one weight format <typeparamref name="TMatrix"/> that split a call over a
/// shared, reusable worker pool: checks arguments, then hands the exact (tokens, Cols) / (tokens, Rows)
/// slices of x and y to the format-specific implementation.
/// </summary>
/// <typeparam name="TMatrix">The weight format the kernel multiplies by.</typeparam>
internal abstract class PooledMatMulKernel<TMatrix> : IMatMulKernel where TMatrix : class, IWeightMatrix
{
    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when <paramref name="isSupported"/> is false.</summary>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="isSupported">Whether the instruction set the kernel needs is enabled.</param>
    /// <param name="requirement">What the kernel needs, for the error message (e.g. "AVX2 and FMA").</param>
    private protected PooledMatMulKernel(int threads, bool isSupported, string requirement)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        if (!isSupported)
            throw new PlatformNotSupportedException($"Kernel {GetType().Name} needs {requirement}, which this CPU or runtime does not enable.");
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        Pool = Threads > 1 ? WorkerPool.Shared(Threads) : null;
    }

    /// <summary>Threads that share one call, the calling thread included.</summary>
    public int Threads { get; }

    /// <summary>The shared pool of <see cref="Threads"/> threads; null for one thread.</summary>
    private protected WorkerPool? Pool { get; }

    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    public bool Supports(IWeightMatrix weights) => weights is TMatrix;

    /// <inheritdoc />
    public void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        TMatrix w = MatMulArguments.Validate<TMatrix>(Name, weights, x.Length, y.Length, tokens);
        if (tokens == 0) return;
        PrepareWeights(w);
        MatMulCore(w, x[..(tokens * w.Cols)], y[..(tokens * w.Rows)], tokens);
    }

    /// <inheritdoc />
    public void Prepare(IWeightMatrix weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights is TMatrix w) PrepareWeights(w);
    }

    /// <summary>
    /// Repacks <paramref name="weights"/> into the layout this kernel streams, once per matrix (later calls return at
    /// once): at model build (<see cref="Prepare"/>) and, for matrices never prepared, on the calling thread before a
    /// multiplication's chunks start. Default: nothing (the kernel reads the stored layout).
    /// </summary>
    private protected virtual void PrepareWeights(TMatrix weights) { }

    /// <summary>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ with arguments already checked and tokens ≥ 1.</summary>
    private protected abstract void MatMulCore(TMatrix w, ReadOnlySpan<float> x, Span<float> y, int tokens);
}
