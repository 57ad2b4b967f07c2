using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Scalar;
using AdvSimdKernels = AgileQuant.Intrinsics.AdvSimd;

namespace AgileQuant.Intrinsics;

/// <summary>
/// Chooses the instruction set once (at model load) and builds the <see cref="KernelSet"/> that multiplies
/// by every weight format this library knows: <see cref="Formats.Fp32Matrix"/>, <see cref="Formats.PackedInt4Matrix"/>
/// and <see cref="Formats.Int8RowMatrix"/>.
/// </summary>
public static class KernelSelector
{
    /// <summary>The instruction set <see cref="KernelPreference.Auto"/> resolves to on this CPU and runtime.</summary>
    public static KernelPreference BestSupported =>
        Avx512Int4Kernel.IsSupported ? KernelPreference.Avx512
        : Avx2Fp32Kernel.IsSupported ? KernelPreference.Avx2
        : AdvSimdKernels.AdvSimdFp32Kernel.IsSupported ? KernelPreference.AdvSimd
        : KernelPreference.Scalar;

    /// <summary>Whether <paramref name="preference"/> can run here (Auto and Scalar always can).</summary>
    public static bool IsSupported(KernelPreference preference) => preference switch
    {
        KernelPreference.Auto or KernelPreference.Scalar => true,
        KernelPreference.Avx2 => Avx2Fp32Kernel.IsSupported,
        KernelPreference.Avx512 => Avx512Int4Kernel.IsSupported,
        KernelPreference.AdvSimd => AdvSimdKernels.AdvSimdFp32Kernel.IsSupported,
        _ => false,
    };

    /// <summary>
    /// Creates the kernels for <paramref name="options"/> (default: Auto, one thread per processor).
    /// Throws <see cref="PlatformNotSupportedException"/> when a pinned instruction set is not supported here.
    /// </summary>
    public static KernelSet Create(KernelOptions? options = null)
    {
        options ??= new KernelOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.Threads, nameof(options));
        if (options.ActivationBits is not (4 or 8))
            throw new ArgumentOutOfRangeException(nameof(options), $"Expected 4 or 8 activation bits, found {options.ActivationBits}.");
        if (!Enum.IsDefined(options.Preference))
            throw new ArgumentOutOfRangeException(nameof(options), $"Expected a defined {nameof(KernelPreference)}, found {(int)options.Preference}.");
        KernelPreference isa = options.Preference == KernelPreference.Auto ? BestSupported : options.Preference;
        if (!IsSupported(isa))
            throw new PlatformNotSupportedException($"Kernel preference {isa} is not supported by this CPU or runtime (best supported: {BestSupported}).");
        int threads = options.Threads == 0 ? Environment.ProcessorCount : options.Threads;
        int bits = options.ActivationBits;
        IMatMulKernel[] kernels = isa switch
        {
            KernelPreference.Avx2 => [new Avx2Fp32Kernel(threads), new Avx2Int4Kernel(bits, threads), new Avx2Int8Kernel(bits, threads)],
            KernelPreference.Avx512 => [new Avx2Fp32Kernel(threads), new Avx512Int4Kernel(bits, threads), new Avx512Int8Kernel(bits, threads)],
            KernelPreference.AdvSimd =>
            [
                new AdvSimdKernels.AdvSimdFp32Kernel(threads), new AdvSimdKernels.AdvSimdInt4Kernel(bits, threads), new AdvSimdKernels.AdvSimdInt8Kernel(bits, threads),
            ],
            _ => [new ScalarFp32Kernel(), new ScalarInt4Kernel(bits), new ScalarInt8Kernel(bits)],
        };
        return new KernelSet(isa, threads, kernels);
    }
}
