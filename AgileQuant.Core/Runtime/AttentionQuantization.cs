namespace AgileQuant.Core.Runtime;

/// <summary>
/// Quantization of the attention path's activations (docs/method.md §2), simulated in floating point (values are
/// rounded to the codes they would have): Q/K/V per token, the KV cache per token and head, and softmax
/// probabilities with the 4-bit log2 quantizer.
/// </summary>
public sealed record AttentionQuantization
{
    /// <summary>Bits of Q, K and V per token after the projections (8), or 0 to keep them in FP32.</summary>
    public int QkvBits { get; init; }

    /// <summary>Bits of each cached key/value head vector (8), or 0 to keep the cache in FP32.</summary>
    public int KvCacheBits { get; init; }

    /// <summary>Round softmax probabilities to powers of two (<c>2^−q</c>, q = clamp(round(−log2 p), 0, 15); 0 when q ≥ 16).</summary>
    public bool Log2Softmax { get; init; }

    /// <summary>No attention quantization.</summary>
    public static AttentionQuantization None { get; } = new();

    /// <summary>True when nothing is quantized.</summary>
    public bool IsNone => QkvBits == 0 && KvCacheBits == 0 && !Log2Softmax;

    /// <summary>Checks the values; throws <see cref="ArgumentOutOfRangeException"/>.</summary>
    public void Validate()
    {
        if (QkvBits is not (0 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(QkvBits), QkvBits, "Q/K/V bits must be 0 (off), 4 or 8.");
        if (KvCacheBits is not (0 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(KvCacheBits), KvCacheBits, "KV-cache bits must be 0 (off), 4 or 8.");
    }
}

/// <summary>How a <see cref="TransformerModel"/> runs beyond its weights: the 4-bit-activation kernel, attention quantization, mixed-precision tokens.</summary>
public sealed record RuntimeOptions
{
    /// <summary>Kernel for linears whose inputs are quantized to 4 bits (W4A4, W8A4 and the mixed scheme's lower-bit tokens).</summary>
    public Intrinsics.IMatMulKernel? FourBitActivationKernel { get; init; }

    /// <summary>Attention-path quantization.</summary>
    public AttentionQuantization Attention { get; init; } = AttentionQuantization.None;

    /// <summary>
    /// Fraction of each prefill's tokens, lowest by attention to the start token summed over heads, whose
    /// activations use <see cref="LinearLayer.LowBitActivationBits"/> at linears that have it (the mixed scheme).
    /// Never the start or the last token; never during decode.
    /// </summary>
    public double LowBitTokenRatio { get; init; }

    /// <summary>
    /// Activation-aware token pruning and the inherited lower-bit token set during prefill (docs/method.md §3); null for none.
    /// When set, its lower-bit ratios replace <see cref="LowBitTokenRatio"/> (which must then be 0).
    /// </summary>
    public Pruning.TokenPruningSchedule? Pruning { get; init; }

    /// <summary>
    /// How contexts store cached keys and values; null (default) stores them exactly: FP32, or, when
    /// <see cref="AttentionQuantization.KvCacheBits"/> rounds the cache (the paper's schemes), those codes themselves (int8
    /// with an FP32 scale per token and head, the same values bit for bit). A type given here stores the values, after any
    /// such rounding, in its own format.
    /// </summary>
    public KvCacheType? KvCache { get; init; }

    /// <summary>
    /// Most tokens a context may hold (prompt plus generated); null: the model's <see cref="TransformerConfig.MaxSequenceLength"/>.
    /// The KV cache grows with the tokens held, not with this limit.
    /// </summary>
    public int? ContextLength { get; init; }

    /// <summary>Alternatives to the Q8/Q4 key layouts, only to measure what the chosen ones buy (docs/accuracy.md, "KV cache").</summary>
    internal KvKeyVariant KvKeyVariant { get; init; }

    /// <summary>Default options: nothing quantized beyond the weights' own kernels.</summary>
    public static RuntimeOptions Default { get; } = new();
}

/// <summary>Key layouts measured against <see cref="KvCacheType.Q8"/>'s and <see cref="KvCacheType.Q4"/>'s per-channel keys.</summary>
internal enum KvKeyVariant
{
    /// <summary>Per-channel keys (the types as documented).</summary>
    PerChannel,

    /// <summary>Keys per token in the value's row format (Q4: Hadamard-rotated blocks).</summary>
    PerToken,

    /// <summary>Q4 only: keys and values per token, without the rotation.</summary>
    PerTokenUnrotated,
}

/// <summary>Which linear of a decoder layer an input belongs to.</summary>
public enum LinearSlot
{
    /// <summary>The input shared by the Q, K and V projections.</summary>
    QueryKeyValue,

    /// <summary>The attention output projection's input.</summary>
    AttentionOutput,

    /// <summary>The input shared by the MLP's gate and up projections (fc1).</summary>
    MlpInput,

    /// <summary>The down projection's (fc2) input.</summary>
    MlpDown,
}

/// <summary>Receives every linear input of a forward pass (e.g. to accumulate GPTQ Hessians during calibration).</summary>
public interface ILinearInputObserver
{
    /// <summary>Called with the (tokens, in_features) input of <paramref name="slot"/> in layer <paramref name="layer"/>.</summary>
    void Observe(int layer, LinearSlot slot, ReadOnlySpan<float> input, int tokens);
}
