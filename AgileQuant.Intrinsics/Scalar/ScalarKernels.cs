namespace AgileQuant.Intrinsics.Scalar;

/// <summary>Catalog entry of the portable scalar kernels: the specification every SIMD kernel is checked against.</summary>
internal sealed class ScalarKernels : KernelCatalogEntry
{
    /// <inheritdoc />
    public override KernelPreference Preference => KernelPreference.Scalar;

    /// <inheritdoc />
    public override string Description => "portable scalar code, any CPU";

    /// <inheritdoc />
    public override bool IsSupported => true;

    /// <inheritdoc />
    public override IReadOnlyList<IMatMulKernel> CreateKernels(int activationBits, int threads) =>
        [new ScalarFp32Kernel(), new ScalarInt4Kernel(activationBits), new ScalarInt8Kernel(activationBits), new ScalarSuperBlockInt4Kernel(activationBits), new ScalarGroupedInt8Kernel(activationBits)];
}
