using System.Collections.Frozen;

namespace AgileQuant.Core.Quantization;

/// <summary>How weights are rounded to their codes.</summary>
public enum WeightRounding
{
    /// <summary>Weights stay floating point.</summary>
    None = 0,

    /// <summary>Round to nearest (<see cref="RoundToNearestQuantizer"/>).</summary>
    RoundToNearest = 1,

    /// <summary>GPTQ error compensation from calibration activations (<see cref="GptqQuantizer"/>).</summary>
    Gptq = 2,
}

/// <summary>
/// A named end-to-end quantization scheme ("W4A8-GPTQ" = 4-bit weights rounded by GPTQ, 8-bit activations at
/// every point of docs/method.md §2). Bits of 16 or more mean "not quantized" (computed in fp32).
/// </summary>
public sealed record QuantizationConfig
{
    /// <summary>The CLI name, e.g. "W4A8-GPTQ".</summary>
    public required string Name { get; init; }

    /// <summary>One line for CLI help.</summary>
    public string Description { get; init; } = "";

    /// <summary>Weight bits (4 or 8; 32 = fp32 weights).</summary>
    public required int WeightBits { get; init; }

    /// <summary>Bits of activations at the linear inputs and Q/K/V (4 or 8; 16 and 32 = not quantized).</summary>
    public required int ActivationBits { get; init; }

    /// <summary>Weight rounding method.</summary>
    public required WeightRounding Rounding { get; init; }

    /// <summary>Weight group size in input columns; 0 = one scale per output row.</summary>
    public int WeightGroupSize { get; init; }

    /// <summary>Symmetric (signed, zero point 0) weight codes; asymmetric otherwise.</summary>
    public bool SymmetricWeights { get; init; }

    /// <summary>GPTQ act-order (descending Hessian diagonal), as in the paper's runs.</summary>
    public bool ActOrder { get; init; }

    /// <summary>Search each weight group's clipping range for the least rounding error (<see cref="QuantizerSettings.ClipSearch"/>).</summary>
    public bool WeightClipSearch { get; init; }

    /// <summary>Quantize softmax probabilities with the 4-bit <see cref="Log2Quantizer"/> before P·V.</summary>
    public bool Log2Softmax { get; init; }

    /// <summary>Keep Q, K and V at 8 bits even when linear inputs use fewer.</summary>
    public bool EightBitQkv { get; init; }

    /// <summary>Store the K/V cache as 8-bit codes.</summary>
    public bool EightBitKvCache { get; init; }

    /// <summary>
    /// Fraction of prefill tokens (lowest start-token attention) whose activations drop to 4 bits at the three
    /// "A8 or A4" points (docs/method.md §2–3); 0 = none.
    /// </summary>
    public double LowBitTokenRatio { get; init; }

    /// <summary>
    /// TRIP (docs/method.md §4): linear inputs use static per-tensor scales from calibration (min/max observer) instead of
    /// per-token scales, with power-of-two factors for outlier channels folded into the weights
    /// (<see cref="TripCalibration"/>), run as one fused gather → quantize → integer matmul → dequantize pass.
    /// Needs calibration text whatever the weight rounding.
    /// </summary>
    public bool StaticActivationScales { get; init; }

    /// <summary>TRIP: channels whose calibrated range exceeds this multiple of the median channel range get power-of-two factors (<see cref="TripCalibration"/>).</summary>
    public float TripOutlierMultiple { get; init; } = TripCalibration.OutlierMultiple;

    /// <summary>
    /// QuaRot's rotation first (<see cref="ModelRotation.Rotate(Runtime.TransformerModel, int)"/>, seed <see cref="ModelRotation.DefaultSeed"/>): norm
    /// weights folded, the residual stream rotated by a randomized Hadamard matrix, V/o_proj per head, and online
    /// Hadamard transforms before o_proj and down_proj; the weights (RTN or GPTQ) are then rounded in the rotated basis.
    /// </summary>
    public bool Rotate { get; init; }

    /// <summary>True when weights are quantized.</summary>
    public bool QuantizesWeights => Rounding != WeightRounding.None;

    /// <summary>True when activations are quantized.</summary>
    public bool QuantizesActivations => ActivationBits <= UniformQuantizationParameters.MaxBits;

    /// <summary>The weight quantizer settings of this scheme (GPTQ: damp 0.01, block 128).</summary>
    /// <exception cref="InvalidOperationException">The scheme keeps fp32 weights.</exception>
    public QuantizerSettings WeightSettings()
    {
        if (!QuantizesWeights) throw new InvalidOperationException($"{Name} keeps floating-point weights");
        return new QuantizerSettings
        {
            Bits = WeightBits,
            Symmetric = SymmetricWeights,
            GroupSize = WeightGroupSize,
            ActOrder = ActOrder,
            ClipSearch = WeightClipSearch,
        };
    }

    /// <summary>Default group size for 4-bit weights.</summary>
    public const int DefaultInt4GroupSize = 32;

    /// <summary>Default <see cref="LowBitTokenRatio"/> of W4A8-MIXED (the paper publishes no schedule; a starting point to measure).</summary>
    public const double DefaultMixedLowBitTokenRatio = 0.25;

    private static readonly QuantizationConfig[] Catalog = BuildCatalog();

    private static readonly FrozenDictionary<string, QuantizationConfig> ByName =
        Catalog.ToFrozenDictionary(c => c.Name, StringComparer.OrdinalIgnoreCase);

    /// <summary>Every named scheme, in catalog order.</summary>
    public static IReadOnlyList<QuantizationConfig> All => Catalog;

    /// <summary>The scheme called <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="AgileQuantException">No scheme has that name; the message lists the valid names.</exception>
    public static QuantizationConfig Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (TryParse(name, out var config)) return config;
        throw new AgileQuantException(
            $"unknown quantization scheme \"{name}\"; expected one of: {string.Join(", ", Catalog.Select(c => c.Name))}");
    }

    /// <summary>Looks up <paramref name="name"/> (case-insensitive, surrounding spaces ignored).</summary>
    public static bool TryParse(string? name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out QuantizationConfig? config)
    {
        config = null;
        return name is not null && ByName.TryGetValue(name.Trim(), out config);
    }

    private static QuantizationConfig[] BuildCatalog()
    {
        // 8-bit weights: symmetric per output row (int8 kernels). 4-bit weights: asymmetric groups of 32
        // (they beat symmetric groups on stories260K: docs/method.md §1, §5). Quantized activations bring the attention options of §2.
        static QuantizationConfig W(string name, int wBits, int aBits, WeightRounding rounding, double lowBitRatio = 0, bool trip = false, bool rotate = false)
        {
            bool int4 = wBits == 4, actQuant = aBits <= 8;
            string weights = int4 ? $"4-bit asymmetric g{DefaultInt4GroupSize} weights" : "8-bit symmetric per-row weights";
            string method = rounding == WeightRounding.Gptq ? "GPTQ (act-order, damp 0.01)" : "round-to-nearest";
            string activations = !actQuant ? "fp32 activations"
                : lowBitRatio > 0 ? $"8-bit per-token activations, {lowBitRatio:P0} lowest-scoring tokens 4-bit at the FC/projection inputs"
                : $"{aBits}-bit per-token activations";
            if (trip) activations = (lowBitRatio > 0 ? $"{lowBitRatio:P0} lowest-scoring tokens 4-bit, the rest 8-bit" : $"{aBits}-bit")
                + " TRIP activations (static per-tensor scales, power-of-two outlier-channel factors folded into the weights)";
            return new QuantizationConfig
            {
                Name = name,
                Description = (rotate ? "QuaRot rotation (randomized Hadamard residual, per-head V/o_proj, online Hadamard before o_proj and down_proj), then " : "")
                    + $"{weights} by {method}; {activations}" + (actQuant ? "; 8-bit Q/K/V and KV cache" : ""),
                WeightBits = wBits,
                ActivationBits = aBits,
                Rounding = rounding,
                WeightGroupSize = int4 ? DefaultInt4GroupSize : 0,
                SymmetricWeights = !int4,
                // Clip search (an option) helps RTN a little and hurts GPTQ, whose error propagation already
                // compensates (measured: docs/method.md §5); the named configurations keep plain min/max ranges.
                WeightClipSearch = false,
                ActOrder = rounding == WeightRounding.Gptq,
                // Log2 softmax is an option, off by default: on stories260K it alone costs W8A8 more perplexity
                // than all other activation rounding (docs/method.md §5).
                Log2Softmax = false,
                EightBitQkv = actQuant,
                EightBitKvCache = actQuant,
                LowBitTokenRatio = lowBitRatio,
                StaticActivationScales = trip,
                Rotate = rotate,
            };
        }

        return
        [
            new QuantizationConfig
            {
                Name = "FP32", WeightBits = 32, ActivationBits = 32, Rounding = WeightRounding.None,
                Description = "no quantization (fp32 weights and activations)",
            },
            W("W8A16", 8, 16, WeightRounding.RoundToNearest),
            W("W4A16-RTN", 4, 16, WeightRounding.RoundToNearest),
            W("W4A16-GPTQ", 4, 16, WeightRounding.Gptq),
            W("W8A8", 8, 8, WeightRounding.RoundToNearest),
            W("W4A8-RTN", 4, 8, WeightRounding.RoundToNearest),
            W("W4A8-GPTQ", 4, 8, WeightRounding.Gptq),
            W("W4A4-RTN", 4, 4, WeightRounding.RoundToNearest),
            W("W4A4-GPTQ", 4, 4, WeightRounding.Gptq),
            W("W4A8-MIXED", 4, 8, WeightRounding.Gptq, DefaultMixedLowBitTokenRatio),
            W("W4A8-TRIP", 4, 8, WeightRounding.Gptq, trip: true),
            W("W4A8-MIXED-TRIP", 4, 8, WeightRounding.Gptq, DefaultMixedLowBitTokenRatio, trip: true),
            W("W4A4-ROT", 4, 4, WeightRounding.RoundToNearest, rotate: true),
            W("W4A4-ROT-GPTQ", 4, 4, WeightRounding.Gptq, rotate: true),
            W("W4A8-ROT", 4, 8, WeightRounding.RoundToNearest, rotate: true),
            W("W4A8-ROT-GPTQ", 4, 8, WeightRounding.Gptq, rotate: true),
        ];
    }
}
