using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Threading;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Base of the SIMD FP32 kernels: <c>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ</c> over the panel copy of
/// an <see cref="Fp32Matrix"/>, split over a reusable worker pool by 16-row panels.
/// </summary>
public abstract class Fp32PanelKernel : IMatMulKernel
{
    private readonly WorkerPool? _pool;
    private readonly ParallelJob<Fp32GemmArgs> _job = new();

    /// <summary>Creates the kernel with <paramref name="threads"/> threads (calling thread included).</summary>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    private protected Fp32PanelKernel(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        _pool = Threads > 1 ? WorkerPool.Shared(Threads) : null;
    }

    /// <summary>Threads that share one call, the calling thread included.</summary>
    public int Threads { get; }

    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    public bool Supports(IWeightMatrix weights) => weights is Fp32Matrix;

    /// <inheritdoc />
    public void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        Fp32Matrix w = MatMulArguments.Validate<Fp32Matrix>(Name, weights, x.Length, y.Length, tokens);
        if (tokens == 0) return;
        MatMulPanels(w, x[..(tokens * w.Cols)], y[..(tokens * w.Rows)], tokens, _pool, _job);
    }

    private protected abstract void MatMulPanels(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, WorkerPool? pool, ParallelJob<Fp32GemmArgs> job);
}
