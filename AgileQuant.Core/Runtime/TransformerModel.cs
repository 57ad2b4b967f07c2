using AgileQuant.Core.Runtime.KvStorage;
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
        if (options.ContextLength is <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.ContextLength, "The context length must be positive.");
        if (options.KvCache is KvCacheType type && !Enum.IsDefined(type))
            throw new ArgumentOutOfRangeException(nameof(options), type, "Unknown KV cache type: expected F32, F16, Q8 or Q4.");
        weights.Validate();
        if (options.KvCache == KvCacheType.Q4 && weights.Config.HeadDim % 2 != 0)
            throw new AgileQuantException($"A Q4 KV cache packs two values per byte and needs an even head size; this model's is {weights.Config.HeadDim}.");
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

    /// <summary>Most tokens one context holds: <see cref="RuntimeOptions.ContextLength"/>, or the config's <see cref="TransformerConfig.MaxSequenceLength"/>.</summary>
    public int ContextLength => Options.ContextLength ?? Config.MaxSequenceLength;

    /// <summary>How contexts store keys and values (<see cref="RuntimeOptions.KvCache"/> resolved).</summary>
    internal CacheLayout KvLayout => Options.KvCache switch
    {
        null => Options.Attention.KvCacheBits > 0 ? CacheLayout.SchemeCodes : CacheLayout.F32,
        KvCacheType.F32 => CacheLayout.F32,
        KvCacheType.F16 => CacheLayout.F16,
        KvCacheType.Q8 => Options.KvKeyVariant == KvKeyVariant.PerChannel ? CacheLayout.Q8 : CacheLayout.Q8TokenKeys,
        _ => Options.KvKeyVariant switch
        {
            KvKeyVariant.PerChannel => CacheLayout.Q4,
            KvKeyVariant.PerToken => CacheLayout.Q4TokenKeys,
            _ => CacheLayout.Q4TokenKeysUnrotated,
        },
    };

    /// <summary>Bytes one token takes in the KV cache of a context, all layers, keys and values (the slots' positions and flags aside).</summary>
    public double KvCacheBytesPerToken => Config.NumLayers * CacheStorage.BytesPerTokenPerLayer(KvLayout, Config);

    /// <summary>What contexts store keys and values as, in words (e.g. for a <c>--verbose</c> line).</summary>
    public string KvCacheDescription => KvLayout switch
    {
        CacheLayout.F32 => "f32",
        CacheLayout.SchemeCodes => $"the scheme's {Options.Attention.KvCacheBits}-bit codes (int8, FP32 scale per token and head)",
        CacheLayout.F16 => "f16",
        CacheLayout.Q8 => $"q8 (int8 keys with an fp16 scale per channel and {Q8ChannelKeys.GroupSlots} tokens; int8 values with an fp16 scale per {KvBlocks.Size(Config.HeadDim)} values)",
        CacheLayout.Q4 => $"q4 (4-bit keys with an fp16 scale and minimum per channel and {Q4ChannelKeys.GroupSlots} tokens; 4-bit values with an fp16 scale and minimum per {KvBlocks.Size(Config.HeadDim)} Hadamard-rotated values)",
        CacheLayout.Q8TokenKeys => "q8 with per-token keys (measurement only)",
        CacheLayout.Q4TokenKeys => "q4 with per-token rotated keys (measurement only)",
        _ => "q4 with per-token keys and values, unrotated (measurement only)",
    };

    /// <summary>The kernel for linears whose inputs are quantized to <paramref name="bits"/> (4 → the 4-bit kernel; otherwise the main one).</summary>
    internal IMatMulKernel? KernelForBits(int bits) => bits == 4 ? Options.FourBitActivationKernel : Kernel;

    /// <summary>Creates a fresh inference context (empty KV cache) for one conversation.</summary>
    public InferenceContext CreateContext() => new(this);
}
