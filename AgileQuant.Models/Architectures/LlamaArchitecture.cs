using AgileQuant.Core.Runtime;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// LLaMA, Llama 2 and 3.x and Mistral (Hugging Face <c>LlamaForCausalLM</c> / <c>MistralForCausalLM</c>, GGUF <c>llama</c>):
/// RMSNorm, RoPE (<c>rope_theta</c>; <c>linear</c> or Llama 3.1's <c>llama3</c> scaling, which GGUF stores as the
/// <c>rope_freqs</c> tensor), SwiGLU, grouped-query attention, biases only on the attention projections and only when the
/// checkpoint has them (<c>attention_bias</c>), a head that is tied when the file omits it (Llama 3.2), Mistral's sliding
/// window where its config sets one. Hugging Face Q/K rows are rotate-half; GGUF's are permuted back to Meta's adjacent
/// pairs (llama.cpp's converter, <c>LlamaModel.permute</c>).
/// </summary>
/// <remarks>
/// llama.cpp runs <c>llama</c> without a sliding window; the window Mistral v0.1 sets (4096) is written to and read from
/// <c>llama.attention.sliding_window</c>, which llama.cpp ignores, so the two agree up to that many tokens.
/// </remarks>
internal sealed class LlamaArchitecture : ArchitectureDescription
{
    /// <inheritdoc />
    public override string Family => "llama";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["llama", "mistral"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "llama";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames => LlamaStyleHfNames;

    /// <summary>
    /// The Hugging Face names of <c>LlamaForCausalLM</c>, which Mistral, Qwen2/3 and Gemma keep (the latter adding their
    /// norms): <c>embed_tokens</c>, <c>layers.{0}.self_attn.q_proj</c>, ..., <c>norm</c>, <c>lm_head</c>.
    /// </summary>
    internal static TensorNameMap LlamaStyleHfNames { get; } = new()
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
    public override TensorNameMap? GgufNames { get; } = TensorNameMap.Gguf with
    {
        Globals = new Dictionary<ModelTensor, string>(TensorNameMap.Gguf.Globals) { [ModelTensor.RotaryFrequencies] = "rope_freqs" },
    };

    /// <inheritdoc />
    public override ConfigFeatures GgufFeatures =>
        ConfigFeatures.HeadSize | ConfigFeatures.RotaryScaling | ConfigFeatures.RotaryFrequencyFactors | ConfigFeatures.SlidingWindow;

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
        c.RequireAbsentOrEqual("hidden_act", "silu");
        return ReadRotaryHfConfig(c, maxPositions: 2048, normEpsilon: 1e-6f, theta: 10000f, bos: 1, eos: 2, llama3: true) with
        {
            SlidingWindow = c.GetInt("sliding_window", 0), // Mistral; null or absent: none
        };
    }

    /// <inheritdoc />
    public override TransformerConfig ReadGgufConfig(GgufFile gguf, TransformerConfig common) => WithGgufSlidingWindow(gguf, common, pattern: 0, fallback: 0);

    /// <inheritdoc />
    public override void WriteGgufConfig(GgufWriter writer, TransformerConfig config) => WriteGgufSlidingWindow(writer, config, pattern: 0);
}
