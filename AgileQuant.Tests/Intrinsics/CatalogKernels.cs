using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// The SIMD kernels of the <see cref="KernelCatalog"/> this machine runs, for tests parameterised over the catalog: every
/// path the self-test checks (<see cref="KernelCatalogEntry.CreateSelfTestKernels"/>), so a new catalog entry is tested
/// with no test edited. Empty under DOTNET_EnableHWIntrinsic=0.
/// </summary>
internal static class CatalogKernels
{
    /// <summary>A 1x1 matrix of each format, to pick the kernels that multiply it.</summary>
    public static readonly IWeightMatrix Fp32 = new Fp32Matrix([0f], 1, 1);

    /// <inheritdoc cref="Fp32"/>
    public static readonly IWeightMatrix Int8 = new Int8RowMatrix([(sbyte)0], [1f], 1, 1);

    /// <inheritdoc cref="Fp32"/>
    public static readonly IWeightMatrix Int4 = PackedInt4Matrix.FromSymmetricCodes([(sbyte)0], [1f], 1, 1, 32);

    /// <inheritdoc cref="Fp32"/>
    public static readonly IWeightMatrix SuperBlockInt4 = SuperBlockInt4SelfTest.Probe;
    public static readonly IWeightMatrix GroupedInt8 = GroupedInt8Matrix.FromGroupScales([(sbyte)0], [1f], [], 1, 1, 32);

    /// <summary>The SIMD kernels that multiply <paramref name="format"/>'s format, at <paramref name="activationBits"/> (integer kernels) and <paramref name="threads"/>.</summary>
    public static IEnumerable<IMatMulKernel> Simd(IWeightMatrix format, int activationBits, int threads) =>
        KernelSelfTest.SimdKernels(threads)
            .Where(k => k.Kernel.Supports(format) && (format is Fp32Matrix || k.ActivationBits == activationBits))
            .Select(k => k.Kernel);

    /// <summary>The catalog's entries other than the scalar one (supported here or not), as test cases named after them.</summary>
    public static IEnumerable<TestCaseData> SimdEntries() =>
        KernelCatalog.Entries.Where(e => e != KernelCatalog.Scalar).Select(e => new TestCaseData(e.Preference).SetArgDisplayNames(e.Name));
}
