using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// BLOOM (Hugging Face <c>BloomForCausalLM</c>): ALiBi, LayerNorm on the embeddings, a fused <c>query_key_value</c>
/// whose rows are laid out per head as [heads, 3, head_dim] (split at load into Q, K, V), GELU (tanh), biases
/// everywhere, head tied to the token embedding. No GGUF form yet: llama.cpp's <c>bloom</c> is not registered here.
/// </summary>
internal sealed class BloomArchitecture : ArchitectureDescription
{
    /// <inheritdoc />
    public override string Family => "bloom";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["bloom"];

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["transformer.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = new()
    {
        LayerPrefix = "h.{0}.",
        Globals = new Dictionary<ModelTensor, string>
        {
            [ModelTensor.TokenEmbedding] = "word_embeddings",
            [ModelTensor.EmbeddingNorm] = "word_embeddings_layernorm",
            [ModelTensor.FinalNorm] = "ln_f",
            [ModelTensor.LmHead] = "lm_head",
        },
        Layers = new Dictionary<LayerTensor, string>
        {
            [LayerTensor.AttentionNorm] = "input_layernorm",
            [LayerTensor.Output] = "self_attention.dense",
            [LayerTensor.MlpNorm] = "post_attention_layernorm",
            [LayerTensor.Up] = "mlp.dense_h_to_4h",
            [LayerTensor.Down] = "mlp.dense_4h_to_h",
        },
        Fused = [new FusedTensor("self_attention.query_key_value", FusedLayout.InterleavedByHead, [LayerTensor.Query, LayerTensor.Key, LayerTensor.Value])],
    };

    /// <inheritdoc />
    public override NormKind Norm => NormKind.LayerNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Alibi;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.GeluTanh;

    /// <inheritdoc />
    public override bool EmbeddingNorm => true;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.Tied;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) => BiasRule.Always;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c.GetBool("apply_residual_connection_post_layernorm", false))
            throw new ModelFormatException(c.FilePath, null, "'apply_residual_connection_post_layernorm' is true, which is not supported");
        int hidden = c.GetInt("hidden_size", "n_embed");
        int heads = c.GetInt("n_head", "num_attention_heads");
        return new TransformerConfig
        {
            Family = Family,
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = 4 * hidden,
            NumLayers = c.GetInt("n_layer", "num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = heads,
            MaxSequenceLength = c.GetInt("seq_length", 2048),
            Norm = Norm,
            NormEpsilon = c.GetFloat("layer_norm_epsilon", 1e-5f),
            Positions = Positions,
            Mlp = Mlp,
            EmbeddingNorm = EmbeddingNorm,
            BosTokenId = c.GetInt("bos_token_id", 1),
            EosTokenId = c.GetInt("eos_token_id", 2),
        };
    }
}
