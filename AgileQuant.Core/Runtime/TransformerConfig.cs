namespace AgileQuant.Core.Runtime;

/// <summary>Which normalisation a family uses.</summary>
public enum NormKind
{
    /// <summary>
    /// RMSNorm: <c>y = w · x / sqrt(mean(x²) + eps)</c> (LLaMA). Gemma's <c>(1 + w)</c> form is this with the 1 added to
    /// the stored weight once at load (exact: Hugging Face computes <c>1 + w</c> in FP32 too), as llama.cpp's converter does.
    /// </summary>
    RmsNorm,

    /// <summary>LayerNorm: <c>y = w · (x − mean) / sqrt(var + eps) + b</c> (OPT, BLOOM).</summary>
    LayerNorm,
}

/// <summary>How token positions enter the model.</summary>
public enum PositionKind
{
    /// <summary>Rotary embeddings on Q and K (LLaMA).</summary>
    Rotary,

    /// <summary>A learned position-embedding table added to the token embedding (OPT).</summary>
    Learned,

    /// <summary>ALiBi: a per-head linear bias on attention scores by key position (BLOOM).</summary>
    Alibi,
}

/// <summary>Which elements rotary embeddings pair up.</summary>
public enum RotaryPairing
{
    /// <summary>Adjacent pairs <c>(x[2i], x[2i+1])</c>: Meta's original code, llama2.c and GGUF files.</summary>
    Adjacent,

    /// <summary>Half-split pairs <c>(x[i], x[i + d/2])</c>: Hugging Face's rotate_half layout.</summary>
    RotateHalf,
}

/// <summary>The feed-forward block of a family.</summary>
public enum MlpKind
{
    /// <summary><c>down(silu(gate(x)) · up(x))</c> (LLaMA).</summary>
    SwiGlu,

    /// <summary><c>fc2(relu(fc1(x)))</c> (OPT).</summary>
    Relu,

    /// <summary><c>fc2(gelu_tanh(fc1(x)))</c> (BLOOM).</summary>
    GeluTanh,

    /// <summary><c>fc2(gelu_erf(fc1(x)))</c> (BERT).</summary>
    GeluErf,

    /// <summary><c>down(gelu_tanh(gate(x)) · up(x))</c> (Gemma's GeGLU).</summary>
    GeGlu,
}

/// <summary>What the runtime knows about each <see cref="MlpKind"/>.</summary>
public static class MlpKinds
{
    /// <summary>Whether the MLP multiplies an activated gate projection into the up projection (SwiGLU, GeGLU).</summary>
    public static bool IsGated(this MlpKind mlp) => mlp is MlpKind.SwiGlu or MlpKind.GeGlu;
}

/// <summary>
/// Per-dimension divisors of the rotary frequencies: pair i turns by <c>pos · θ^(−2i/d) / Factors[i]</c>. This is how
/// Llama 3.1's <c>llama3</c> RoPE scaling reaches the runtime (<see cref="Llama3"/>), and
/// what llama.cpp stores in a GGUF's <c>rope_freqs</c> tensor. Compared by value.
/// </summary>
/// <param name="Factors">One divisor per rotated pair (HeadDim / 2), each finite and positive.</param>
public sealed record RotaryFrequencyFactors(IReadOnlyList<float> Factors)
{
    /// <summary>
    /// Llama 3.1's <c>llama3</c> RoPE scaling: with wavelength λ_i = 2π / inv_freq_i and L the original context, f_i = 1
    /// where λ_i &lt; L / <paramref name="highFrequencyFactor"/>, <paramref name="factor"/> where λ_i &gt; L /
    /// <paramref name="lowFrequencyFactor"/>, and a blend between them (docs/architecture.md, the families).
    /// </summary>
    public static RotaryFrequencyFactors Llama3(int headDim, float theta, float factor, float lowFrequencyFactor, float highFrequencyFactor, int originalContextLength) =>
        new(RotaryEmbedding.Llama3FrequencyFactors(headDim, theta, factor, lowFrequencyFactor, highFrequencyFactor, originalContextLength));

    /// <summary>Equal when every factor is bit for bit the same.</summary>
    public bool Equals(RotaryFrequencyFactors? other) =>
        other is not null && Factors.Select(BitConverter.SingleToInt32Bits).SequenceEqual(other.Factors.Select(BitConverter.SingleToInt32Bits));

    /// <summary>A hash of the factors' bits.</summary>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (float f in Factors) hash.Add(BitConverter.SingleToInt32Bits(f));
        return hash.ToHashCode();
    }
}

/// <summary>
/// Describes one decoder architecture completely: sizes plus the handful of choices (norm, positions, MLP, biases, norm
/// placement, per-head Q/K norms, soft-capping, sliding-window layers, RoPE scaling) by which the LLaMA, OPT, BLOOM,
/// Qwen, Phi-3 and Gemma families differ. The runtime reads only this; a new family is a new way of filling it in.
/// </summary>
public sealed record TransformerConfig
{
    /// <summary>
    /// The family (<c>llama</c>, <c>qwen2</c>, <c>qwen3</c>, <c>phi3</c>, <c>gemma2</c>, <c>gemma3</c>, <c>opt</c>, <c>bloom</c>): the name of its architecture description, which the file
    /// readers and writers of AgileQuant.Models look up (an unknown family is refused there).
    /// </summary>
    public required string Family { get; init; }

    /// <summary>Vocabulary size (rows of the embedding table and of the LM head).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Width of the residual stream.</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Width of the feed-forward block's inner layer.</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Number of decoder layers.</summary>
    public required int NumLayers { get; init; }

    /// <summary>Number of query heads.</summary>
    public required int NumHeads { get; init; }

    /// <summary>Number of key/value heads (grouped-query attention when smaller than <see cref="NumHeads"/>).</summary>
    public required int NumKvHeads { get; init; }

    /// <summary>Longest sequence (prompt plus generated tokens) the model accepts.</summary>
    public required int MaxSequenceLength { get; init; }

    /// <summary>Normalisation kind.</summary>
    public required NormKind Norm { get; init; }

    /// <summary>Epsilon inside the normalisation's square root.</summary>
    public required float NormEpsilon { get; init; }

    /// <summary>Position scheme.</summary>
    public required PositionKind Positions { get; init; }

    /// <summary>Rotary pairing (only with <see cref="PositionKind.Rotary"/>).</summary>
    public RotaryPairing RotaryPairing { get; init; } = RotaryPairing.RotateHalf;

    /// <summary>Rotary base θ (only with <see cref="PositionKind.Rotary"/>).</summary>
    public float RotaryTheta { get; init; } = 10000f;

    /// <summary>
    /// Linear RoPE scaling (Hugging Face <c>rope_scaling</c> type <c>linear</c>, GGUF <c>rope.scaling.factor</c>): positions are
    /// divided by it; 1 = none. With <see cref="LocalRotaryTheta"/>, only the global layers scale (Gemma 3).
    /// </summary>
    public float RotaryScalingFactor { get; init; } = 1f;

    /// <summary>
    /// Per-dimension divisors of the rotary frequencies (Llama 3.1's <c>llama3</c> scaling, GGUF <c>rope_freqs</c>), or null.
    /// With <see cref="LocalRotaryTheta"/>, only the global layers use them.
    /// </summary>
    public RotaryFrequencyFactors? RotaryFrequencyFactors { get; init; }

    /// <summary>
    /// Rotary base of the sliding-window (local) layers when they have their own (Gemma 3: 10000, unscaled, while the
    /// global layers use <see cref="RotaryTheta"/> with the scaling); 0 = local layers rotate as the global ones.
    /// </summary>
    public float LocalRotaryTheta { get; init; }

    /// <summary>Offset added to positions before the learned-position lookup (OPT: 2).</summary>
    public int LearnedPositionOffset { get; init; }

    /// <summary>Feed-forward kind.</summary>
    public required MlpKind Mlp { get; init; }

    /// <summary>True for pre-LN blocks (norm before attention/MLP); false for post-LN (norm after the residual add).</summary>
    public bool PreNorm { get; init; } = true;

    /// <summary>Whether a norm follows the last layer (LLaMA, BLOOM, pre-LN OPT).</summary>
    public bool FinalNorm { get; init; } = true;

    /// <summary>Whether a LayerNorm is applied to the embeddings (BLOOM's word_embeddings_layernorm).</summary>
    public bool EmbeddingNorm { get; init; }

    /// <summary>Width of the embedding table when it differs from <see cref="HiddenSize"/> (OPT's word_embed_proj_dim); otherwise equal to it.</summary>
    public int EmbeddingSize { get; init; }

    /// <summary>Width of one attention head when it is not <c>HiddenSize / NumHeads</c> (Gemma, Qwen3: <c>head_dim</c>); 0 = that quotient.</summary>
    public int HeadSize { get; init; }

    /// <summary>Whether each head's query and key are RMS-normalised (weights of HeadDim) before RoPE (Qwen3, Gemma 3).</summary>
    public bool QueryKeyNorm { get; init; }

    /// <summary>Whether the attention and MLP outputs are normalised before their residual adds (Gemma 2/3's post-norms).</summary>
    public bool PostNorms { get; init; }

    /// <summary>Multiplier of the token embeddings (Gemma: √HiddenSize); 1 = none.</summary>
    public float EmbeddingScale { get; init; } = 1f;

    /// <summary>Multiplier of q·k before the softmax; 0 = 1/√HeadDim (Gemma: <c>query_pre_attn_scalar</c>^−½).</summary>
    public float AttentionScale { get; init; }

    /// <summary>Attention logit soft-cap c: scores become <c>c · tanh(s / c)</c> after scaling (Gemma 2: 50); 0 = none.</summary>
    public float AttentionLogitSoftcap { get; init; }

    /// <summary>Final logit soft-cap c: logits become <c>c · tanh(z / c)</c> (Gemma 2: 30); 0 = none.</summary>
    public float FinalLogitSoftcap { get; init; }

    /// <summary>
    /// Sliding-window size w of the local layers: a query at position p attends to the cached tokens at positions
    /// p − w &lt; q ≤ p (Mistral, Gemma); 0 = every layer attends to every earlier token.
    /// </summary>
    public int SlidingWindow { get; init; }

    /// <summary>
    /// Which layers use <see cref="SlidingWindow"/>, as llama.cpp's <c>set_swa_pattern(n)</c>: with n = 0 every layer; else
    /// layer l is local when <c>l mod n &lt; n − 1</c>, so every n-th layer is global (Gemma 2: 2, Gemma 3: 6).
    /// </summary>
    public int SlidingWindowPattern { get; init; }

    /// <summary>Id of the beginning-of-sequence token.</summary>
    public int BosTokenId { get; init; } = 1;

    /// <summary>Id of the end-of-sequence token.</summary>
    public int EosTokenId { get; init; } = 2;

    /// <summary>Width of one attention head: <see cref="HeadSize"/>, or <c>HiddenSize / NumHeads</c>.</summary>
    public int HeadDim => HeadSize > 0 ? HeadSize : HiddenSize / NumHeads;

    /// <summary>Width of all key (or value) heads together.</summary>
    public int KvDim => NumKvHeads * HeadDim;

    /// <summary>Width of the embedding table (<see cref="EmbeddingSize"/> or <see cref="HiddenSize"/>).</summary>
    public int EmbeddingWidth => EmbeddingSize > 0 ? EmbeddingSize : HiddenSize;

    /// <summary>Whether <paramref name="layer"/> attends over a sliding window (<see cref="SlidingWindow"/>, <see cref="SlidingWindowPattern"/>).</summary>
    public bool IsLocalLayer(int layer) =>
        SlidingWindow > 0 && (SlidingWindowPattern == 0 || layer % SlidingWindowPattern < SlidingWindowPattern - 1);

    /// <summary>Checks sizes for consistency; throws <see cref="AgileQuantException"/> naming the first problem.</summary>
    public void Validate()
    {
        Require(VocabSize > 0, $"vocab size must be positive, found {VocabSize}");
        Require(HiddenSize > 0, $"hidden size must be positive, found {HiddenSize}");
        Require(IntermediateSize > 0, $"intermediate size must be positive, found {IntermediateSize}");
        Require(NumLayers > 0, $"layer count must be positive, found {NumLayers}");
        Require(NumHeads > 0, $"head count must be positive, found {NumHeads}");
        Require(HeadSize >= 0, $"head size must not be negative, found {HeadSize}");
        Require(HeadSize > 0 || HiddenSize % NumHeads == 0, $"hidden size {HiddenSize} must be a multiple of the head count {NumHeads} (or the head size given)");
        Require(NumKvHeads > 0 && NumHeads % NumKvHeads == 0, $"head count {NumHeads} must be a multiple of the key/value head count {NumKvHeads}");
        Require(MaxSequenceLength > 0, $"maximum sequence length must be positive, found {MaxSequenceLength}");
        Require(Positions != PositionKind.Rotary || HeadDim % 2 == 0, $"rotary embeddings need an even head size, found {HeadDim}");
        Require(EmbeddingSize >= 0, $"embedding size must not be negative, found {EmbeddingSize}");
        Require(float.IsFinite(RotaryTheta) && RotaryTheta > 0, $"rotary base must be positive and finite, found {RotaryTheta}");
        Require(float.IsFinite(RotaryScalingFactor) && RotaryScalingFactor > 0, $"RoPE scaling factor must be positive and finite, found {RotaryScalingFactor}");
        Require(RotaryFrequencyFactors is null || RotaryFrequencyFactors.Factors.Count == HeadDim / 2 && RotaryFrequencyFactors.Factors.All(f => float.IsFinite(f) && f > 0),
            $"RoPE frequency factors must be {HeadDim / 2} positive finite numbers, found {RotaryFrequencyFactors?.Factors.Count} of them");
        Require(float.IsFinite(LocalRotaryTheta) && LocalRotaryTheta >= 0, $"local rotary base must be positive and finite (or 0), found {LocalRotaryTheta}");
        Require(float.IsFinite(EmbeddingScale) && EmbeddingScale > 0, $"embedding scale must be positive and finite, found {EmbeddingScale}");
        Require(float.IsFinite(AttentionScale) && AttentionScale >= 0, $"attention scale must be positive and finite (or 0), found {AttentionScale}");
        Require(float.IsFinite(AttentionLogitSoftcap) && AttentionLogitSoftcap >= 0, $"attention soft-cap must be positive and finite (or 0), found {AttentionLogitSoftcap}");
        Require(float.IsFinite(FinalLogitSoftcap) && FinalLogitSoftcap >= 0, $"final logit soft-cap must be positive and finite (or 0), found {FinalLogitSoftcap}");
        Require(SlidingWindow >= 0 && SlidingWindowPattern >= 0, $"sliding window and its pattern must not be negative, found {SlidingWindow} and {SlidingWindowPattern}");
        Require(!QueryKeyNorm || Norm == NormKind.RmsNorm, "per-head query/key norms are RMS norms, so the model's norm must be RMSNorm");
    }

    private static void Require(bool condition, string problem)
    {
        if (!condition) throw new AgileQuantException("Invalid transformer configuration: " + problem + ".");
    }
}
