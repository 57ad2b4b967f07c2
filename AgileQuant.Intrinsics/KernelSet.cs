namespace AgileQuant.Intrinsics;

/// <summary>
/// The kernels of one instruction set, one per weight format, behind a single <see cref="IMatMulKernel"/>:
/// <see cref="MatMul"/> dispatches on the weight matrix's type.
/// </summary>
public sealed class KernelSet : IMatMulKernel
{
    private readonly IMatMulKernel[] _kernels;

    internal KernelSet(KernelPreference isa, int threads, IMatMulKernel[] kernels)
    {
        Isa = isa;
        Threads = threads;
        _kernels = kernels;
        Name = isa.ToString().ToLowerInvariant();
    }

    /// <summary>The instruction set the kernels use (never <see cref="KernelPreference.Auto"/>).</summary>
    public KernelPreference Isa { get; }

    /// <summary>Threads per SIMD multiplication, the calling thread included (scalar kernels use one).</summary>
    public int Threads { get; }

    /// <summary>The per-format kernels, in dispatch order.</summary>
    public IReadOnlyList<IMatMulKernel> Kernels => _kernels;

    /// <inheritdoc />
    public string Name { get; }

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

    private IMatMulKernel? Find(IWeightMatrix weights)
    {
        foreach (IMatMulKernel kernel in _kernels)
            if (kernel.Supports(weights)) return kernel;
        return null;
    }
}
