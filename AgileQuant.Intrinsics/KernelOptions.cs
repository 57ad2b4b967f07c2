namespace AgileQuant.Intrinsics;

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

    /// <summary>
    /// One activation scale per token or per group of columns for the formats GGUF's block types load into
    /// (<see cref="ActivationScaleGranularity"/>); default per group, which keeps more of the model's quality on
    /// llama.cpp's files (docs/benchmarks-quality.md).
    /// </summary>
    public ActivationScaleGranularity ActivationScales { get; init; } = ActivationScaleGranularity.PerGroup;
}
