using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// LLaMA (Hugging Face <c>LlamaForCausalLM</c>, GGUF <c>llama</c>): RMSNorm, RoPE, SwiGLU, grouped-query attention,
/// biases only on the attention projections and only when the checkpoint has them (<c>attention_bias</c>), a head
/// that is tied when the file omits it. Hugging Face Q/K rows are rotate-half; GGUF's are permuted back to Meta's
/// adjacent pairs.
/// </summary>
internal sealed class LlamaArchitecture : ArchitectureDescription
{
    /// <inheritdoc />
    public override string Family => "llama";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["llama"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "llama";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = new()
    {
        LayerPrefix = "layers.{0}.",
        Globals = new Dictionary<ModelTensor, string>
        {
            [ModelTensor.TokenEmbedding] = "embed_tokens",
            [ModelTensor.FinalNorm] = "norm",
            [ModelTensor.LmHead] = "lm_head",
        },
        Layers = new Dictionary<LayerTensor, string>
        {
            [LayerTensor.AttentionNorm] = "input_layernorm",
            [LayerTensor.Query] = "self_attn.q_proj",
            [LayerTensor.Key] = "self_attn.k_proj",
            [LayerTensor.Value] = "self_attn.v_proj",
            [LayerTensor.Output] = "self_attn.o_proj",
            [LayerTensor.MlpNorm] = "post_attention_layernorm",
            [LayerTensor.Gate] = "mlp.gate_proj",
            [LayerTensor.Up] = "mlp.up_proj",
            [LayerTensor.Down] = "mlp.down_proj",
        },
    };

    /// <inheritdoc />
    public override IReadOnlyList<string> HfIgnoredSuffixes { get; } = [".rotary_emb.inv_freq"];

    /// <inheritdoc />
    public override NormKind Norm => NormKind.RmsNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Rotary;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.SwiGlu;

    /// <inheritdoc />
    public override RotaryPairing GgufRotaryPairing => RotaryPairing.Adjacent;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.TiedWhenAbsent;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) =>
        linear is LayerTensor.Query or LayerTensor.Key or LayerTensor.Value or LayerTensor.Output ? BiasRule.Optional : BiasRule.None;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        c.RequireAbsent("rope_scaling", "RoPE scaling is not supported yet");
        c.RequireAbsentOrEqual("hidden_act", "silu");
        int heads = c.GetInt("num_attention_heads");
        return new TransformerConfig
        {
            Family = Family,
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = c.GetInt("hidden_size"),
            IntermediateSize = c.GetInt("intermediate_size"),
            NumLayers = c.GetInt("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = c.GetInt("num_key_value_heads", heads),
            MaxSequenceLength = c.GetInt("max_position_embeddings", 2048),
            Norm = Norm,
            NormEpsilon = c.GetFloat("rms_norm_eps", 1e-6f),
            Positions = Positions,
            RotaryPairing = RotaryPairing.RotateHalf,
            RotaryTheta = c.GetFloat("rope_theta", 10000f),
            Mlp = Mlp,
            BosTokenId = c.GetInt("bos_token_id", 1),
            EosTokenId = c.GetInt("eos_token_id", 2),
        };
    }
}
