using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Threading;
using X86 = System.Runtime.Intrinsics.X86;

namespace AgileQuant.Intrinsics.Avx2;

/// <summary>
/// AVX2+FMA FP32 kernel: <c>y[t, r] = Σ_c x[t, c] · W[r, c]</c> with a 6-token × 16-row register tile,
/// cache blocking and a reusable worker pool; twin of <see cref="Scalar.ScalarFp32Kernel"/>.
/// </summary>
internal sealed class Avx2Fp32Kernel : Fp32PanelKernel
{
    /// <summary>Whether this CPU and runtime allow the kernel (AVX2 and FMA enabled).</summary>
    public static bool IsSupported => X86.Avx2.IsSupported && X86.Fma.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public Avx2Fp32Kernel(int threads = 0) : base(threads, IsSupported, "AVX2 and FMA") { }

    /// <inheritdoc />
    public override string Name => "fp32-avx2";

    private protected override void MatMulPanels(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, ParallelJob<Fp32GemmArgs> job) =>
        Fp32PanelGemm<Avx2Fp32MicroKernel>.MatMul(w, x, y, tokens, Pool, job);
}
