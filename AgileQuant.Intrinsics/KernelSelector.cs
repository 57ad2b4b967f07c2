namespace AgileQuant.Intrinsics;

/// <summary>
/// Chooses the instruction set once (at model load) from the <see cref="KernelCatalog"/> and builds the
/// <see cref="KernelSet"/> that multiplies by every weight format this library knows: <see cref="Formats.Fp32Matrix"/>,
/// <see cref="Formats.PackedInt4Matrix"/> and <see cref="Formats.Int8RowMatrix"/>.
/// </summary>
public static class KernelSelector
{
    /// <summary>The instruction set <see cref="KernelPreference.Auto"/> resolves to on this CPU and runtime.</summary>
    public static KernelPreference BestSupported => KernelCatalog.BestSupported.Preference;

    /// <summary>
    /// Most threads a kernel set runs: four per processor. More only add switching, and each is a thread of its own, so a
    /// larger <see cref="KernelOptions.Threads"/> (a typo, or a hostile setting) is capped here instead of failing to create them.
    /// </summary>
    public static int MaxThreads => 4 * Environment.ProcessorCount;

    /// <summary>Whether <paramref name="preference"/> can run here (Auto and Scalar always can).</summary>
    public static bool IsSupported(KernelPreference preference) =>
        preference == KernelPreference.Auto || KernelCatalog.Entries.Any(entry => entry.Preference == preference && entry.IsSupported);

    /// <summary>
    /// Creates the kernels for <paramref name="options"/> (default: Auto, one thread per processor; at most <see cref="MaxThreads"/>).
    /// Throws <see cref="PlatformNotSupportedException"/> when a pinned instruction set is not supported here.
    /// </summary>
    public static KernelSet Create(KernelOptions? options = null)
    {
        options ??= new KernelOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.Threads, nameof(options));
        if (options.ActivationBits is not (4 or 8))
            throw new ArgumentOutOfRangeException(nameof(options), $"Expected 4 or 8 activation bits, found {options.ActivationBits}.");
        if (!Enum.IsDefined(options.ActivationScales))
            throw new ArgumentOutOfRangeException(nameof(options), $"Expected a defined {nameof(ActivationScaleGranularity)}, found {(int)options.ActivationScales}.");
        if (!Enum.IsDefined(options.Preference))
            throw new ArgumentOutOfRangeException(nameof(options), $"Expected a defined {nameof(KernelPreference)}, found {(int)options.Preference}.");
        KernelCatalogEntry entry = options.Preference == KernelPreference.Auto ? KernelCatalog.BestSupported : KernelCatalog.Find(options.Preference);
        if (!entry.IsSupported)
            throw new PlatformNotSupportedException($"Kernel preference {entry.Preference} ({entry.Description}) is not supported by this CPU or runtime (best supported: {BestSupported}).");
        int threads = options.Threads == 0 ? Environment.ProcessorCount : Math.Min(options.Threads, MaxThreads);
        IMatMulKernel[] kernels = [.. entry.CreateKernels(options.ActivationBits, threads)];
        foreach (IMatMulKernel kernel in kernels) KernelSet.SetActivationScales(kernel, options.ActivationScales);
        return new KernelSet(entry, threads, options.ActivationBits, options.ActivationScales, kernels);
    }
}
