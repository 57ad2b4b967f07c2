using AgileQuant.Intrinsics;

namespace AgileQuant.Core.Runtime;

/// <summary>
/// A loaded decoder model: immutable weights, the kernel that multiplies by them, and precomputed
/// position tables. Thread-safe; create one <see cref="InferenceContext"/> per conversation.
/// </summary>
public sealed class TransformerModel
{
    /// <summary>The weights (shared, read-only).</summary>
    public TransformerWeights Weights { get; }

    /// <summary>The architecture.</summary>
    public TransformerConfig Config => Weights.Config;

    /// <summary>The matrix kernel every linear layer runs through.</summary>
    public IMatMulKernel Kernel { get; }

    /// <summary>Rotary embedding of the global layers (every layer unless the local ones have their own), for <see cref="PositionKind.Rotary"/> models.</summary>
    internal RotaryEmbedding? Rotary { get; }

    /// <summary>Rotary embedding of the sliding-window layers: their own base, unscaled (<see cref="TransformerConfig.LocalRotaryTheta"/>), else <see cref="Rotary"/>.</summary>
    internal RotaryEmbedding? LocalRotary { get; }

    /// <summary>Per-head ALiBi slopes, for <see cref="PositionKind.Alibi"/> models.</summary>
    internal float[]? AlibiSlopes { get; }

    /// <summary>How the model runs beyond its weights (4-bit-activation kernel, attention quantization, mixed tokens).</summary>
    public RuntimeOptions Options { get; }

    /// <summary>
    /// Wraps validated weights with a kernel; throws <see cref="AgileQuantException"/> if the weights do not fit
    /// their config or no kernel can run a layer at its activation width.
    /// </summary>
    public TransformerModel(TransformerWeights weights, IMatMulKernel kernel, RuntimeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(kernel);
        options ??= RuntimeOptions.Default;
        options.Attention.Validate();
        if (!(options.LowBitTokenRatio >= 0 && options.LowBitTokenRatio < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.LowBitTokenRatio, "The lower-bit token ratio must be in [0, 1).");
        if (options.Pruning is not null && options.LowBitTokenRatio > 0)
            throw new ArgumentException("Set lower-bit tokens either by LowBitTokenRatio or by the pruning schedule's lower-bit ratios, not both.", nameof(options));
        weights.Validate();
        Weights = weights;
        Kernel = kernel;
        Options = options;
        int layerIndex = 0;
        foreach (LayerWeights l in weights.Layers)
        {
            foreach ((_, LinearLayer linear) in l.Linears)
            {
                foreach (int bits in new[] { linear.ActivationBits, linear.LowBitActivationBits })
                {
                    if (bits == 0) continue;
                    IMatMulKernel? k = KernelForBits(bits);
                    if (k is null || !k.Supports(linear.Weight))
                        throw new AgileQuantException($"Layer {layerIndex}: no kernel multiplies a {linear.Weight.GetType().Name} with {bits}-bit activations (kernel '{(k ?? kernel).Name}').");
                    k.Prepare(linear.Weight); // repacked into the kernel's layout now, not on the first token
                }
            }
            layerIndex++;
            // A repack drops the row-major copy it replaces; collecting after each layer returns that memory before the next
            // layer's copies are made, so the weights are held about once at the peak, not twice (docs/architecture.md, "Loading").
            if (RepacksWeights(l)) GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
        }
        TransformerConfig c = weights.Config;
        if (c.Positions == PositionKind.Rotary)
        {
            Rotary = new RotaryEmbedding(c.HeadDim, c.RotaryTheta, c.RotaryPairing, c.RotaryScalingFactor, c.RotaryFrequencyFactors?.Factors);
            LocalRotary = c.LocalRotaryTheta > 0 ? new RotaryEmbedding(c.HeadDim, c.LocalRotaryTheta, c.RotaryPairing) : Rotary;
        }
        if (c.Positions == PositionKind.Alibi) AlibiSlopes = Runtime.AlibiSlopes.Compute(c.NumHeads);
    }

    // Whether preparing the layer replaced stored weights with a kernel layout (packed integer formats; FP32 is used as stored).
    private static bool RepacksWeights(LayerWeights layer) => layer.Linears.Any(entry => entry.Linear.Weight is not AgileQuant.Intrinsics.Formats.Fp32Matrix);

    /// <summary>The kernel for linears whose inputs are quantized to <paramref name="bits"/> (4 → the 4-bit kernel; otherwise the main one).</summary>
    internal IMatMulKernel? KernelForBits(int bits) => bits == 4 ? Options.FourBitActivationKernel : Kernel;

    /// <summary>Creates a fresh inference context (empty KV cache) for one conversation.</summary>
    public InferenceContext CreateContext() => new(this);
}
