namespace AgileQuant.Intrinsics.Avx2;

/// <summary>Catalog entry of the x86-64 AVX2 + FMA kernels.</summary>
internal sealed class Avx2Kernels : KernelCatalogEntry
{
    /// <inheritdoc />
    public override KernelPreference Preference => KernelPreference.Avx2;

    /// <inheritdoc />
    public override string Description => "x86-64 AVX2 + FMA";

    /// <inheritdoc />
    public override bool IsSupported => Avx2Fp32Kernel.IsSupported && Avx2Int4Kernel.IsSupported && Avx2Int8Kernel.IsSupported && Avx2SuperBlockInt4Kernel.IsSupported && Avx2GroupedInt8Kernel.IsSupported;

    /// <inheritdoc />
    public override IReadOnlyList<IMatMulKernel> CreateKernels(int activationBits, int threads) =>
        [new Avx2Fp32Kernel(threads), new Avx2Int4Kernel(activationBits, threads), new Avx2Int8Kernel(activationBits, threads),
         new Avx2SuperBlockInt4Kernel(activationBits, threads),
         new Avx2GroupedInt8Kernel(activationBits, threads)];
}
