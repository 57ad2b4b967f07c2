using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.AdvSimd;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>The AdvSimd integer kernels, when this machine runs them (null elsewhere), on the path for cores without SDOT.</summary>
internal static class AdvSimdKernels
{
    public static IMatMulKernel? Int4(int bits, int threads) => AdvSimdInt4Kernel.IsSupported ? new AdvSimdInt4Kernel(bits, threads, useDotProduct: false) : null;

    public static IMatMulKernel? Int8(int bits, int threads) => AdvSimdInt8Kernel.IsSupported ? new AdvSimdInt8Kernel(bits, threads, useDotProduct: false) : null;
}
