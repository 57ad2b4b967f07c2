using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Threading;
using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// ARM AdvSimd (NEON) FP32 kernel: <c>y[t, r] = Σ_c x[t, c] · W[r, c]</c> with a 4-token × 16-row
/// register tile (FMLA), cache blocking and a reusable worker pool; twin of <see cref="Scalar.ScalarFp32Kernel"/>.
/// </summary>
internal sealed class AdvSimdFp32Kernel : Fp32PanelKernel
{
    /// <summary>Whether this CPU and runtime allow the kernel (64-bit ARM with AdvSimd enabled).</summary>
    public static bool IsSupported => Arm.AdvSimd.Arm64.IsSupported;

    /// <summary>Creates the kernel; throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.</summary>
    /// <param name="threads">Threads per call, ≥ 1; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public AdvSimdFp32Kernel(int threads = 0) : base(threads, IsSupported, "64-bit ARM AdvSimd") { }

    /// <inheritdoc />
    public override string Name => "fp32-advsimd";

    private protected override void MatMulPanels(Fp32Matrix w, ReadOnlySpan<float> x, Span<float> y, int tokens, ParallelJob<Fp32GemmArgs> job) =>
        Fp32PanelGemm<AdvSimdFp32MicroKernel>.MatMul(w, x, y, tokens, Pool, job);
}
