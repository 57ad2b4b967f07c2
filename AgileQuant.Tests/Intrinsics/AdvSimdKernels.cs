using AgileQuant.Intrinsics;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>The AdvSimd integer kernels, when this machine runs them (null elsewhere).</summary>
internal static class AdvSimdKernels
{
    public static IMatMulKernel? Int4(int bits, int threads) => null;

    public static IMatMulKernel? Int8(int bits, int threads) => null;
}
