using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// OPT (Hugging Face <c>OPTForCausalLM</c>; llama.cpp has no OPT architecture, so no GGUF form): learned positions with
/// offset 2, pre-LN (<c>do_layer_norm_before</c>) or post-LN blocks, ReLU MLP, biases on every attention/MLP linear,
/// project_in/project_out when <c>word_embed_proj_dim</c> differs from <c>hidden_size</c>, head tied to the token embedding.
/// </summary>
internal sealed class OptArchitecture : ArchitectureDescription
{
    /// <inheritdoc />
    public override string Family => "opt";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["opt"];

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.decoder.", "decoder."];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = new()
    {
        LayerPrefix = "layers.{0}.",
        Globals = new Dictionary<ModelTensor, string>
        {
            [ModelTensor.TokenEmbedding] = "embed_tokens",
            [ModelTensor.PositionEmbedding] = "embed_positions",
            [ModelTensor.ProjectIn] = "project_in",
            [ModelTensor.FinalNorm] = "final_layer_norm",
            [ModelTensor.ProjectOut] = "project_out",
            [ModelTensor.LmHead] = "lm_head",
        },
        Layers = new Dictionary<LayerTensor, string>
        {
            [LayerTensor.AttentionNorm] = "self_attn_layer_norm",
            [LayerTensor.Query] = "self_attn.q_proj",
            [LayerTensor.Key] = "self_attn.k_proj",
            [LayerTensor.Value] = "self_attn.v_proj",
            [LayerTensor.Output] = "self_attn.out_proj",
            [LayerTensor.MlpNorm] = "final_layer_norm",
            [LayerTensor.Up] = "fc1",
            [LayerTensor.Down] = "fc2",
        },
    };

    /// <inheritdoc />
    public override NormKind Norm => NormKind.LayerNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Learned;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.Relu;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.Tied;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) => BiasRule.Always;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        c.RequireAbsentOrEqual("activation_function", "relu");
        if (!c.GetBool("enable_bias", true)) throw new ModelFormatException(c.FilePath, null, "'enable_bias' is false, but only OPT with biases is supported");
        if (!c.GetBool("layer_norm_elementwise_affine", true))
            throw new ModelFormatException(c.FilePath, null, "'layer_norm_elementwise_affine' is false, but only affine layer norms are supported");
        int hidden = c.GetInt("hidden_size");
        bool preNorm = c.GetBool("do_layer_norm_before", true);
        return new TransformerConfig
        {
            Family = Family,
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = c.GetInt("ffn_dim"),
            NumLayers = c.GetInt("num_hidden_layers"),
            NumHeads = c.GetInt("num_attention_heads"),
            NumKvHeads = c.GetInt("num_attention_heads"),
            MaxSequenceLength = c.GetInt("max_position_embeddings", 2048),
            Norm = Norm,
            NormEpsilon = 1e-5f, // OPT configs carry no epsilon: torch's LayerNorm default
            Positions = Positions,
            LearnedPositionOffset = 2,
            Mlp = Mlp,
            PreNorm = preNorm,
            FinalNorm = preNorm && !c.GetBool("_remove_final_layer_norm", false),
            EmbeddingSize = c.GetInt("word_embed_proj_dim", hidden),
            BosTokenId = c.GetInt("bos_token_id", 2),
            EosTokenId = c.GetInt("eos_token_id", 2),
        };
    }
}
