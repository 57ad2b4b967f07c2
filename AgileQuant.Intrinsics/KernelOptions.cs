namespace AgileQuant.Intrinsics;

/// <summary>Which instruction set the kernels use.</summary>
public enum KernelPreference
{
    /// <summary>The widest instruction set this CPU and runtime support (AVX-512, then AVX2, then AdvSimd, then scalar).</summary>
    Auto,

    /// <summary>Portable scalar kernels: the specification every SIMD kernel is tested against.</summary>
    Scalar,

    /// <summary>x86-64 AVX2 + FMA kernels.</summary>
    Avx2,

    /// <summary>64-bit ARM AdvSimd (NEON) kernels.</summary>
    AdvSimd,

    /// <summary>
    /// x86-64 AVX-512 (F + BW) integer GEMM kernels, with the AVX2 kernels for FP32 and for single-token GEMV.
    /// </summary>
    Avx512,
}

/// <summary>Options for <see cref="KernelSelector.Create"/>.</summary>
public sealed record KernelOptions
{
    /// <summary>Instruction set to use; <see cref="KernelPreference.Auto"/> picks the widest supported one.</summary>
    public KernelPreference Preference { get; init; } = KernelPreference.Auto;

    /// <summary>
    /// Threads per matrix multiplication (calling thread included); 0 = <see cref="Environment.ProcessorCount"/>. Values above
    /// <see cref="KernelSelector.MaxThreads"/> are capped to it.
    /// </summary>
    public int Threads { get; init; }

    /// <summary>Bits per activation code for the integer kernels: 8 (W4A8, W8A8) or 4 (W4A4, W8A4).</summary>
    public int ActivationBits { get; init; } = 8;
}
