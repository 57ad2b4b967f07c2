using AgileQuant.Intrinsics.Avx2;

namespace AgileQuant.Intrinsics.Avx512;

/// <summary>
/// Catalog entry of the x86-64 AVX-512 (F + BW) integer GEMM kernels, with the AVX2 FP32 kernel (the integer kernels
/// hand single-token calls to AVX2 streams of their own).
/// </summary>
internal sealed class Avx512Kernels : KernelCatalogEntry
{
    /// <inheritdoc />
    public override KernelPreference Preference => KernelPreference.Avx512;

    /// <inheritdoc />
    public override string Description => "x86-64 AVX-512 F + BW, with AVX2 + FMA";

    /// <inheritdoc />
    public override bool IsSupported => Avx2Fp32Kernel.IsSupported && Avx512Int4Kernel.IsSupported && Avx512Int8Kernel.IsSupported && Avx512SuperBlockInt4Kernel.IsSupported && Avx512GroupedInt8Kernel.IsSupported;

    /// <inheritdoc />
    public override IReadOnlyList<IMatMulKernel> CreateKernels(int activationBits, int threads) =>
        [new Avx2Fp32Kernel(threads), new Avx512Int4Kernel(activationBits, threads), new Avx512Int8Kernel(activationBits, threads),
         new Avx512SuperBlockInt4Kernel(activationBits, threads),
         new Avx512GroupedInt8Kernel(activationBits, threads)];
}
