namespace AgileQuant.Intrinsics;

/// <summary>
/// How the integer kernels scale a token's 8- or 4-bit activation codes (docs/kernels.md, "Activation scales"): one scale
/// for the whole token, or one per group of input columns, the groups being the weight format's.
/// </summary>
public enum ActivationScaleGranularity
{
    /// <summary>One scale per token: <c>s = max_c |x[c]| / qmax</c> over the token's row (docs/method.md §1).</summary>
    PerToken,

    /// <summary>
    /// One scale per group of input columns, <c>s_g = max_{c∈g} |x[c]| / qmax</c>, for the formats GGUF's block types load into
    /// (<see cref="Formats.GroupedInt8Matrix"/>: its 16- or 32-column groups; <see cref="Formats.SuperBlockInt4Matrix"/>: its
    /// super-blocks; a <see cref="Formats.PackedInt4Matrix"/> that <see cref="Formats.PackedInt4Matrix.TakesActivationGroupScales"/>,
    /// i.e. GGUF Q4_0: its groups of 32); the other formats, and the matrices this library quantizes, keep one scale per token. <c>y = Σ_g s_w,g · s_x,g · Σ_{c∈g} q_w · q_x</c>.
    /// </summary>
    PerGroup,
}
