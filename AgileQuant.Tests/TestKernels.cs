using AgileQuant.Intrinsics;

namespace AgileQuant.Tests;

/// <summary>The kernel model-level tests run through.</summary>
public static class TestKernels
{
    /// <summary>The default kernel for the machine.</summary>
    public static IMatMulKernel Default { get; } = KernelSelector.Create();
}
