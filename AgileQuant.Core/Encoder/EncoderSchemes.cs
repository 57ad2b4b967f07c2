using AgileQuant.Core.Quantization;

namespace AgileQuant.Core.Encoder;

/// <summary>
/// The quantization schemes the encoder accepts: every scheme of the <see cref="QuantizationConfig"/> catalog, plus
/// <see cref="W8A8Gptq"/>, which keeps W8A8's formats exactly (8-bit symmetric weights with one scale per output row,
/// 8-bit per-token activations, 8-bit Q/K/V and K/V rounding) and only chooses the 8-bit weight codes by GPTQ
/// (act-order, damp 0.01) instead of round-to-nearest.
/// </summary>
public static class EncoderSchemes
{
    /// <summary>W8A8 with GPTQ-rounded weights: <c>W[r, c] ≈ s_r · q[r, c]</c>, q ∈ [−128, 127] chosen by GPTQ; same kernels as W8A8.</summary>
    public static QuantizationConfig W8A8Gptq { get; } = QuantizationConfig.Parse("W8A8") with
    {
        Name = "W8A8-GPTQ",
        Rounding = WeightRounding.Gptq,
        ActOrder = true,
        Description = "8-bit symmetric per-row weights, GPTQ (act-order, damp 0.01), 8-bit per-token activations",
    };

    /// <summary>The scheme named <paramref name="name"/> (case-insensitive): a catalog scheme or <c>W8A8-GPTQ</c>.</summary>
    /// <exception cref="AgileQuantException">The name is neither.</exception>
    public static QuantizationConfig Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (string.Equals(name.Trim(), W8A8Gptq.Name, StringComparison.OrdinalIgnoreCase)) return W8A8Gptq;
        if (QuantizationConfig.TryParse(name, out QuantizationConfig? config)) return config;
        throw new AgileQuantException(
            $"unknown quantization scheme \"{name}\"; expected one of: {string.Join(", ", QuantizationConfig.All.Select(c => c.Name).Append(W8A8Gptq.Name))}");
    }
}
