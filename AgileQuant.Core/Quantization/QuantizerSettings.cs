namespace AgileQuant.Core.Quantization;

/// <summary>
/// How a weight matrix (rows = output channels, cols = input channels) is quantized: bit width,
/// symmetric or asymmetric codes, granularity, and the GPTQ-only knobs.
/// </summary>
public sealed record QuantizerSettings
{
    /// <summary>Bits per code, 2..8.</summary>
    public int Bits { get; init; } = 4;

    /// <summary>Signed codes with zero point 0 (true) or unsigned codes with a zero point (false).</summary>
    public bool Symmetric { get; init; }

    /// <summary>
    /// Input columns sharing one scale (and zero point), e.g. 32, 64, 128; the last group of a row may be
    /// shorter. 0 (or any value >= cols) means one scale per output row.
    /// </summary>
    public int GroupSize { get; init; }

    /// <summary>Scale convention of symmetric codes (ignored when asymmetric).</summary>
    public SymmetricScaleConvention ScaleConvention { get; init; } = SymmetricScaleConvention.MaxAbsOverPositiveLimit;

    /// <summary>GPTQ: dampening added to the Hessian diagonal, as a fraction of its mean diagonal (0.01 = 1 %).</summary>
    public double DampeningFraction { get; init; } = 0.01;

    /// <summary>GPTQ: process columns in descending order of their Hessian diagonal (act-order).</summary>
    public bool ActOrder { get; init; }

    /// <summary>
    /// GPTQ: compute every group's scale once from the original weights before error propagation
    /// (the reference's <c>static_groups</c>). Always in effect with <see cref="ActOrder"/>, so groups stay
    /// contiguous runs of original columns.
    /// </summary>
    public bool StaticGroups { get; init; }

    /// <summary>
    /// Shrink each group's range to the factor p ∈ {1, 0.99, …, 0.21} that minimises <c>Σ |x − x̂|^2.4</c> over the group
    /// (the grid search of the reference GPTQ quantizer's <c>mse</c> option) instead of using the plain min/max.
    /// </summary>
    public bool ClipSearch { get; init; }

    /// <summary>GPTQ: columns per lazy-update block (128 in the reference).</summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>Group width actually used for a matrix with <paramref name="cols"/> columns (cols when per row).</summary>
    public int EffectiveGroupSize(int cols) => GroupSize <= 0 || GroupSize >= cols ? Math.Max(cols, 1) : GroupSize;

    internal void Validate()
    {
        UniformQuantizationParameters.ValidateBits(Bits);
        if (GroupSize < 0)
            throw new ArgumentOutOfRangeException(nameof(GroupSize), GroupSize, "expected 0 (per row) or a positive group size");
        if (!Enum.IsDefined(ScaleConvention))
            throw new ArgumentOutOfRangeException(nameof(ScaleConvention), ScaleConvention, "unknown scale convention");
        if (!double.IsFinite(DampeningFraction) || DampeningFraction < 0)
            throw new ArgumentOutOfRangeException(nameof(DampeningFraction), DampeningFraction, "expected a finite value >= 0");
        if (BlockSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(BlockSize), BlockSize, "expected a positive block size");
    }
}
