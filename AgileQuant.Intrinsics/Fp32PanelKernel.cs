using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Base of the SIMD FP32 kernels: <c>Y (tokens, Rows) = X (tokens, Cols) · Wᵀ</c> over the panel copy of
/// an <see cref="Fp32Matrix"/>, split over a reusable worker pool by 16-row panels.
/// </summary>
internal abstract class Fp32PanelKernel : PooledMatMulKernel<Fp32Matrix>
{
    private readonly Threading.ParallelJob<Fp32GemmArgs> _job = new();

    private protected Fp32PanelKernel(int threads, bool isSupported, string requirement) : base(threads, isSupported, requirement) { }

    private protected override void MatMulCore(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens) =>
        MatMulPanels(w, x, y, tokens, _job);

    private protected abstract void MatMulPanels(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, Threading.ParallelJob<Fp32GemmArgs> job);
}
