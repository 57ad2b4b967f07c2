using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Intrinsics;

/// <summary>
/// The kernels of one instruction set (a <see cref="KernelCatalog"/> entry), one per weight format, behind a single
/// <see cref="IMatMulKernel"/>: <see cref="MatMul"/> dispatches on the weight matrix's type, <see cref="Prepare"/>
/// readies a matrix for its kernel when a model is built, and TRIP (<see cref="ITripKernel"/>) runs through the integer
/// kernels.
/// </summary>
public sealed class KernelSet : IMatMulKernel, ITripKernel
{
    private readonly IMatMulKernel[] _kernels;

    internal KernelSet(KernelCatalogEntry entry, int threads, int activationBits, ActivationScaleGranularity activationScales, IMatMulKernel[] kernels)
    {
        Entry = entry;
        Threads = threads;
        ActivationBits = activationBits;
        ActivationScales = activationScales;
        _kernels = kernels;
    }

    /// <summary>The catalog entry the kernels come from.</summary>
    public KernelCatalogEntry Entry { get; }

    /// <summary>The instruction set the kernels use (never <see cref="KernelPreference.Auto"/>).</summary>
    public KernelPreference Isa => Entry.Preference;

    /// <summary>Threads per SIMD multiplication, the calling thread included (scalar kernels use one).</summary>
    public int Threads { get; }

    /// <summary>Bits per activation code of the integer kernels (8 or 4).</summary>
    public int ActivationBits { get; }

    /// <summary>Per-token or per-group activation scales of the integer kernels that take group scales.</summary>
    public ActivationScaleGranularity ActivationScales { get; }

    /// <summary>Options that create an equal set: this instruction set pinned, its thread count, activation bits and scales.</summary>
    public KernelOptions Options => new() { Preference = Isa, Threads = Threads, ActivationBits = ActivationBits, ActivationScales = ActivationScales };

    /// <summary>Sets the activation scale granularity of <paramref name="kernel"/> when it is an integer kernel (before its first call).</summary>
    internal static void SetActivationScales(IMatMulKernel kernel, ActivationScaleGranularity scales)
    {
        switch (kernel)
        {
            case QuantizedMatMulKernel<Formats.GroupedInt8Matrix> grouped: grouped.ActivationScales = scales; break;
            case QuantizedMatMulKernel<Formats.SuperBlockInt4Matrix> superBlock: superBlock.ActivationScales = scales; break;
            case QuantizedMatMulKernel<Formats.PackedInt4Matrix> int4: int4.ActivationScales = scales; break;
        }
    }

    /// <summary>The per-format kernels, in dispatch order.</summary>
    public IReadOnlyList<IMatMulKernel> Kernels => _kernels;

    /// <inheritdoc />
    public string Name => Entry.Name;

    /// <inheritdoc />
    public bool Supports(IWeightMatrix weights) => Find(weights) is not null;

    /// <summary>The kernel that multiplies by <paramref name="weights"/>; throws if none does.</summary>
    public IMatMulKernel KernelFor(IWeightMatrix weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return Find(weights) ?? throw new NotSupportedException($"Kernel set {Name} has no kernel for weight format {weights.GetType().Name}.");
    }

    /// <inheritdoc />
    public void MatMul(IWeightMatrix weights, ReadOnlySpan<float> x, Span<float> y, int tokens) =>
        KernelFor(weights).MatMul(weights, x, y, tokens);

    /// <summary>Readies <paramref name="weights"/> for the kernel of its format (see <see cref="IMatMulKernel.Prepare"/>); throws if none takes it.</summary>
    public void Prepare(IWeightMatrix weights) => KernelFor(weights).Prepare(weights);

    /// <inheritdoc />
    public bool SupportsTrip(IWeightMatrix weights) => TripMatMul.Supports(weights);

    /// <summary>
    /// TRIP (see <see cref="ITripKernel"/>) through the integer kernel of the weights' format, whose inner loops take the
    /// statically quantized rows; where that kernel has no such route (4-bit activations), the reference pass
    /// (<see cref="TripMatMul"/>) with <see cref="Threads"/>.
    /// </summary>
    public void MatMulTrip(IWeightMatrix weights, ReadOnlySpan<float> x, ReadOnlySpan<int> rows, ReadOnlySpan<bool> lowBit,
        StaticActivationScales scales, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weights);
        TripMatMul.Route(Find(weights), weights, x, rows, lowBit, scales, y, Threads);
    }

    private IMatMulKernel? Find(IWeightMatrix weights)
    {
        foreach (IMatMulKernel kernel in _kernels)
            if (kernel.Supports(weights)) return kernel;
        return null;
    }
}
