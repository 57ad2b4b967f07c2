using Arm = System.Runtime.Intrinsics.Arm;

namespace AgileQuant.Intrinsics.AdvSimd;

/// <summary>
/// Catalog entry of the 64-bit ARM AdvSimd (NEON) kernels. The integer kernels use SDOT where the core has it; the
/// self-test also forces the paths of cores without it (SMLAL / SMULL, the packed 4-bit multiplier).
/// </summary>
internal sealed class AdvSimdKernels : KernelCatalogEntry
{
    /// <inheritdoc />
    public override KernelPreference Preference => KernelPreference.AdvSimd;

    /// <inheritdoc />
    public override string Description => "64-bit ARM AdvSimd (NEON), SDOT where the core has it";

    /// <inheritdoc />
    public override bool IsSupported => AdvSimdFp32Kernel.IsSupported && AdvSimdInt4Kernel.IsSupported && AdvSimdInt8Kernel.IsSupported && AdvSimdSuperBlockInt4Kernel.IsSupported && AdvSimdGroupedInt8Kernel.IsSupported;

    /// <inheritdoc />
    public override IReadOnlyList<IMatMulKernel> CreateKernels(int activationBits, int threads) =>
        [new AdvSimdFp32Kernel(threads), new AdvSimdInt4Kernel(activationBits, threads), new AdvSimdInt8Kernel(activationBits, threads),
         new AdvSimdSuperBlockInt4Kernel(activationBits, threads),
         new AdvSimdGroupedInt8Kernel(activationBits, threads)];

    /// <inheritdoc />
    public override IEnumerable<IMatMulKernel> CreateSelfTestKernels(int activationBits, int threads)
    {
        yield return new AdvSimdFp32Kernel(threads);
        foreach (bool dot in Arm.Dp.IsSupported ? new[] { true, false } : [false])
        {
            yield return new AdvSimdInt8Kernel(activationBits, threads, dot);
            yield return new AdvSimdInt4Kernel(activationBits, threads, dot);
            yield return new AdvSimdSuperBlockInt4Kernel(activationBits, threads, dot);
            yield return new AdvSimdGroupedInt8Kernel(activationBits, threads, dot);
        }
    }
}
