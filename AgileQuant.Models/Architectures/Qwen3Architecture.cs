using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Qwen3 (Hugging Face <c>Qwen3ForCausalLM</c>, GGUF <c>qwen3</c>): Qwen2 without biases and with a per-head RMSNorm on the
/// query and key before RoPE (<c>q_norm</c>, <c>k_norm</c>; GGUF <c>attn_q_norm</c>, <c>attn_k_norm</c>), a head size of
/// its own (<c>head_dim</c>). Rotate-half Q/K rows in both formats (NEOX RoPE in llama.cpp).
/// </summary>
internal sealed class Qwen3Architecture : ArchitectureDescription
{
    /// <inheritdoc />
    public override string Family => "qwen3";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["qwen3"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "qwen3";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = LlamaArchitecture.LlamaStyleHfNames with
    {
        Layers = new Dictionary<LayerTensor, string>(LlamaArchitecture.LlamaStyleHfNames.Layers)
        {
            [LayerTensor.QueryNorm] = "self_attn.q_norm",
            [LayerTensor.KeyNorm] = "self_attn.k_norm",
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
    public override bool QueryKeyNorm => true;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.TiedWhenAbsent;

    /// <inheritdoc />
    public override ConfigFeatures GgufFeatures => ConfigFeatures.HeadSize | ConfigFeatures.RotaryScaling;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) => BiasRule.None;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.GetBool("attention_bias", false))
            throw new ModelFormatException(config.FilePath, null, "'attention_bias' is true, but Qwen3's attention projections have no biases here (nor in llama.cpp)");
        Qwen2Architecture.RequireQwenTraits(this, config);
        return ReadRotaryHfConfig(config, maxPositions: 40960, normEpsilon: 1e-6f, theta: 10000f, bos: 151643, eos: 151645);
    }
}
