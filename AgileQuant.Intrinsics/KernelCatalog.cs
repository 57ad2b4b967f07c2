using AgileQuant.Intrinsics.AdvSimd;
using AgileQuant.Intrinsics.Avx2;
using AgileQuant.Intrinsics.Avx512;
using AgileQuant.Intrinsics.Scalar;

namespace AgileQuant.Intrinsics;

/// <summary>Which instruction set the kernels use: one member per <see cref="KernelCatalogEntry"/> (kept beside the catalog, so a new entry is declared in this file).</summary>
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

/// <summary>
/// One instruction set's kernels, a row of the <see cref="KernelCatalog"/>: the CPU feature test that says they can
/// run here, the kernel for each weight format, and the paths the self-test checks against the scalar twins.
/// </summary>
/// <remarks>The entries are defined in the instruction sets' folders (e.g. <c>Avx2/Avx2Kernels.cs</c>).</remarks>
public abstract class KernelCatalogEntry
{
    private protected KernelCatalogEntry() { }

    /// <summary>The <see cref="KernelOptions.Preference"/> that pins this entry.</summary>
    public abstract KernelPreference Preference { get; }

    /// <summary>Lower-case name: the <see cref="KernelSet.Name"/> and the CLI's <c>--kernel</c> value, e.g. <c>avx2</c>.</summary>
    public string Name => Preference.ToString().ToLowerInvariant();

    /// <summary>What the kernels are and need, in a few words (e.g. <c>x86-64 AVX2 + FMA</c>).</summary>
    public abstract string Description { get; }

    /// <summary>Whether this CPU and runtime enable what the kernels need.</summary>
    public abstract bool IsSupported { get; }

    /// <summary>
    /// The kernels a <see cref="KernelSet"/> of this instruction set holds, one per weight format, in dispatch order.
    /// Throws <see cref="PlatformNotSupportedException"/> when not <see cref="IsSupported"/>.
    /// </summary>
    /// <param name="activationBits">Bits per activation code of the integer kernels: 8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1 (kernels that run on the calling thread ignore it).</param>
    public abstract IReadOnlyList<IMatMulKernel> CreateKernels(int activationBits, int threads);

    /// <summary>
    /// Every path the self-test and the kernel tests compare with the scalar twins: the kernels of
    /// <see cref="CreateKernels"/>, plus, where a kernel picks a path from the CPU at run time, kernels forced onto the
    /// other paths (so one machine checks the paths of cores it is not).
    /// </summary>
    /// <param name="activationBits">Bits per activation code of the integer kernels: 8 or 4.</param>
    /// <param name="threads">Threads per call, ≥ 1.</param>
    public virtual IEnumerable<IMatMulKernel> CreateSelfTestKernels(int activationBits, int threads) => CreateKernels(activationBits, threads);
}

/// <summary>
/// Every instruction set this library has kernels for, widest first: the one list that <see cref="KernelSelector"/>,
/// <see cref="KernelSelfTest"/>, the kernel tests and the CLI's <c>--kernel</c> choices read (docs/architecture.md,
/// "How to add a kernel").
/// </summary>
public static class KernelCatalog
{
    /// <summary>The entries, widest instruction set first: <see cref="KernelPreference.Auto"/> picks the first one supported here.</summary>
    public static IReadOnlyList<KernelCatalogEntry> Entries { get; } =
    [
        new Avx512Kernels(),
        new Avx2Kernels(),
        new AdvSimdKernels(),
        new ScalarKernels(),
    ];

    /// <summary>The portable scalar entry: the twins every SIMD kernel is checked against, supported everywhere.</summary>
    public static KernelCatalogEntry Scalar => Find(KernelPreference.Scalar);

    /// <summary>The first entry supported by this CPU and runtime (the scalar one at worst).</summary>
    public static KernelCatalogEntry BestSupported => Entries.First(entry => entry.IsSupported);

    /// <summary>The entry pinned by <paramref name="preference"/>; throws for <see cref="KernelPreference.Auto"/> or an undefined value.</summary>
    public static KernelCatalogEntry Find(KernelPreference preference) =>
        Entries.FirstOrDefault(entry => entry.Preference == preference)
        ?? throw new ArgumentOutOfRangeException(nameof(preference), preference, $"Expected one of the catalog's instruction sets ({string.Join(", ", Entries.Select(e => e.Preference))}), found {preference}.");

    /// <summary>
    /// Parses a kernel name: <c>auto</c> or an entry's <see cref="KernelCatalogEntry.Name"/> (case-insensitive).
    /// Returns false for anything else.
    /// </summary>
    public static bool TryParse(string? name, out KernelPreference preference)
    {
        preference = KernelPreference.Auto;
        if (string.Equals(name, "auto", StringComparison.OrdinalIgnoreCase)) return true;
        KernelCatalogEntry? entry = Entries.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase));
        if (entry is null) return false;
        preference = entry.Preference;
        return true;
    }
}
