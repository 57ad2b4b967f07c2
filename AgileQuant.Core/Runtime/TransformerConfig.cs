namespace AgileQuant.Core.Runtime;

/// <summary>Which normalisation a family uses.</summary>
public enum NormKind
{
    /// <summary>RMSNorm: <c>y = w · x / sqrt(mean(x²) + eps)</c> (LLaMA).</summary>
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
}

/// <summary>
/// Describes one decoder architecture completely: sizes plus the handful of choices (norm, positions,
/// MLP, biases, norm placement) by which the LLaMA, OPT and BLOOM families differ. The runtime reads
/// only this; a new family is a new way of filling it in.
/// </summary>
public sealed record TransformerConfig
{
    /// <summary>Family name for display (<c>llama</c>, <c>opt</c>, <c>bloom</c>).</summary>
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

    /// <summary>Id of the beginning-of-sequence token.</summary>
    public int BosTokenId { get; init; } = 1;

    /// <summary>Id of the end-of-sequence token.</summary>
    public int EosTokenId { get; init; } = 2;

    /// <summary>
    /// Per layer (NumLayers entries): how many of the latest cached tokens a query attends to, itself included, or 0 for
    /// all of them; null: every layer attends to every cached token. Mistral uses one window in every layer, Gemma 2 one in
    /// every other layer. Counted in the layer's cache slots (after token pruning, the tokens that reached the layer).
    /// </summary>
    public IReadOnlyList<int>? SlidingWindows { get; init; }

    /// <summary>Width of one attention head.</summary>
    public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Width of all key (or value) heads together.</summary>
    public int KvDim => NumKvHeads * HeadDim;

    /// <summary>Width of the embedding table (<see cref="EmbeddingSize"/> or <see cref="HiddenSize"/>).</summary>
    public int EmbeddingWidth => EmbeddingSize > 0 ? EmbeddingSize : HiddenSize;

    /// <summary>Checks sizes for consistency; throws <see cref="AgileQuantException"/> naming the first problem.</summary>
    public void Validate()
    {
        Require(VocabSize > 0, $"vocab size must be positive, found {VocabSize}");
        Require(HiddenSize > 0, $"hidden size must be positive, found {HiddenSize}");
        Require(IntermediateSize > 0, $"intermediate size must be positive, found {IntermediateSize}");
        Require(NumLayers > 0, $"layer count must be positive, found {NumLayers}");
        Require(NumHeads > 0 && HiddenSize % NumHeads == 0, $"hidden size {HiddenSize} must be a multiple of the head count {NumHeads}");
        Require(NumKvHeads > 0 && NumHeads % NumKvHeads == 0, $"head count {NumHeads} must be a multiple of the key/value head count {NumKvHeads}");
        Require(MaxSequenceLength > 0, $"maximum sequence length must be positive, found {MaxSequenceLength}");
        Require(Positions != PositionKind.Rotary || HeadDim % 2 == 0, $"rotary embeddings need an even head size, found {HeadDim}");
        Require(EmbeddingSize >= 0, $"embedding size must not be negative, found {EmbeddingSize}");
        Require(SlidingWindows is null || SlidingWindows.Count == NumLayers, $"sliding windows must have one entry per layer ({NumLayers}), found {SlidingWindows?.Count}");
        Require(SlidingWindows is null || SlidingWindows.All(w => w >= 0), "sliding windows must not be negative");
    }

    /// <summary>The sliding window of <paramref name="layer"/> in cache slots, or 0 when it attends to every cached token.</summary>
    internal int SlidingWindowAt(int layer) => SlidingWindows is { } windows ? windows[layer] : 0;

    private static void Require(bool condition, string problem)
    {
        if (!condition) throw new AgileQuantException("Invalid transformer configuration: " + problem + ".");
    }
}
