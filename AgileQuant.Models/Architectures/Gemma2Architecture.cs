using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Gemma 2 (Hugging Face <c>Gemma2ForCausalLM</c>, GGUF <c>gemma2</c>): RMSNorm with <c>(1 + w)</c> (Hugging Face stores w;
/// the 1 is added at load, as GGUF files already hold it), GeGLU (gelu-tanh gate), embeddings scaled by √d, norms after
/// attention and after the MLP as well as before them, attention logits soft-capped (50) and final logits soft-capped
/// (30), queries scaled by <c>query_pre_attn_scalar</c>^−½, a sliding window (4096) on every other layer starting with
/// the first, a head size of its own, the head tied to the embedding. Rotate-half Q/K rows in both formats (NEOX RoPE).
/// </summary>
/// <remarks>
/// Hugging Face names: <c>input_layernorm</c> before attention, <c>post_attention_layernorm</c> on its output,
/// <c>pre_feedforward_layernorm</c> before the MLP, <c>post_feedforward_layernorm</c> on its output; GGUF's:
/// <c>attn_norm</c>, <c>post_attention_norm</c>, <c>ffn_norm</c>, <c>post_ffw_norm</c>. llama.cpp's gemma2 loader fixes the
/// layer pattern (2) and derives the query scale from the layer count (the 46-layer 27B model scales by
/// (hidden / heads)^−½, the others by head_dim^−½), so the GGUF writer refuses a model whose pattern or scale those
/// would not reproduce.
/// </remarks>
internal sealed class Gemma2Architecture : ArchitectureDescription
{
    /// <summary>llama.cpp's layer pattern of gemma2: every other layer local, the first one included.</summary>
    private const int LayerPattern = 2;

    /// <inheritdoc />
    public override string Family => "gemma2";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["gemma2"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "gemma2";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = GemmaHfNames(queryKeyNorm: false);

    /// <inheritdoc />
    public override NormKind Norm => NormKind.RmsNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Rotary;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.GeGlu;

    /// <inheritdoc />
    public override bool PostNorms => true;

    /// <inheritdoc />
    public override float HfNormWeightOffset => 1f;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.Tied;

    /// <inheritdoc />
    public override ConfigFeatures GgufFeatures =>
        ConfigFeatures.HeadSize | ConfigFeatures.RotaryScaling | ConfigFeatures.SlidingWindow | ConfigFeatures.AttentionLogitSoftcap
        | ConfigFeatures.FinalLogitSoftcap | ConfigFeatures.EmbeddingScale | ConfigFeatures.AttentionScale;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) => BiasRule.None;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig config)
    {
        TransformerConfig c = ReadGemmaConfig(this, config, defaultPattern: LayerPattern, defaultTheta: 10000f);
        return c with
        {
            AttentionLogitSoftcap = Softcap(config, "attn_logit_softcapping", 50f),
            FinalLogitSoftcap = Softcap(config, "final_logit_softcapping", 30f),
        };
    }

    /// <inheritdoc />
    public override TransformerConfig ReadGgufConfig(GgufFile gguf, TransformerConfig common)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        TransformerConfig c = WithGgufSlidingWindow(gguf, common, LayerPattern, fallback: 4096); // llama.cpp's default for gemma2
        return WithGemmaGgufTraits(c, layersOf27B: 46) with
        {
            AttentionLogitSoftcap = (float)GgufModelReader.PositiveFloat(gguf, GgufKeyPrefix + "attn_logit_softcapping", 50),
            FinalLogitSoftcap = (float)GgufModelReader.PositiveFloat(gguf, GgufKeyPrefix + "final_logit_softcapping", 30),
        };
    }

    /// <inheritdoc />
    public override void WriteGgufConfig(GgufWriter writer, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(config);
        RequireGemmaGgufTraits(this, config, layersOf27B: 46);
        // llama.cpp always soft-caps gemma2 and always gives it sliding-window layers
        if (config.AttentionLogitSoftcap == 0 || config.FinalLogitSoftcap == 0 || config.SlidingWindow == 0)
            throw new AgileQuantException("GGUF export of a 'gemma2' model needs attention and final logit soft-caps and a sliding window (llama.cpp applies them to every gemma2 file), found one of them absent.");
        WriteGgufSlidingWindow(writer, config, LayerPattern);
        writer.AddFloat32(GgufKeyPrefix + "attn_logit_softcapping", config.AttentionLogitSoftcap);
        writer.AddFloat32(GgufKeyPrefix + "final_logit_softcapping", config.FinalLogitSoftcap);
    }

    /// <summary>
    /// Gemma's Hugging Face names: LLaMA's, with the norm before the MLP <c>pre_feedforward_layernorm</c>, the post-norms
    /// <c>post_attention_layernorm</c> / <c>post_feedforward_layernorm</c>, and Gemma 3's <c>q_norm</c> / <c>k_norm</c>.
    /// </summary>
    internal static TensorNameMap GemmaHfNames(bool queryKeyNorm)
    {
        var layers = new Dictionary<LayerTensor, string>(LlamaArchitecture.LlamaStyleHfNames.Layers)
        {
            [LayerTensor.PostAttentionNorm] = "post_attention_layernorm",
            [LayerTensor.MlpNorm] = "pre_feedforward_layernorm",
            [LayerTensor.PostMlpNorm] = "post_feedforward_layernorm",
        };
        if (queryKeyNorm)
        {
            layers[LayerTensor.QueryNorm] = "self_attn.q_norm";
            layers[LayerTensor.KeyNorm] = "self_attn.k_norm";
        }
        return LlamaArchitecture.LlamaStyleHfNames with { Layers = layers };
    }

    /// <summary>What Gemma 2 and 3 configs share: sizes, head size, activation, query scale, sliding window, √d embedding scale.</summary>
    internal static TransformerConfig ReadGemmaConfig(ArchitectureDescription family, HfConfig c, int defaultPattern, float defaultTheta)
    {
        ArgumentNullException.ThrowIfNull(c);
        string activationKey = c.Has("hidden_activation") ? "hidden_activation" : "hidden_act";
        c.RequireAbsentOrEqual(activationKey, "gelu_pytorch_tanh");
        if (c.GetBool("attention_bias", false))
            throw new ModelFormatException(c.FilePath, null, $"'attention_bias' is true, but {family.Family}'s attention projections have no biases here (nor in llama.cpp)");
        float queryScalar = c.GetFloat("query_pre_attn_scalar", 256f);
        if (!(queryScalar > 0)) throw new ModelFormatException(c.FilePath, null, $"field 'query_pre_attn_scalar': expected a positive number, found {queryScalar}");
        TransformerConfig config = family.ReadRotaryHfConfig(c, maxPositions: 8192, normEpsilon: 1e-6f, theta: defaultTheta, bos: 2, eos: 1, defaultHeadDim: 256);
        int? pattern = ReadSlidingWindowPattern(c, config.NumLayers, defaultPattern);
        int window = pattern is null ? 0 : c.GetInt("sliding_window", 4096);
        return config with
        {
            EmbeddingScale = MathF.Sqrt(config.HiddenSize),
            AttentionScale = queryScalar == config.HeadDim ? 0f : 1f / MathF.Sqrt(queryScalar),
            SlidingWindow = window,
            SlidingWindowPattern = window > 0 ? pattern ?? 0 : 0,
        };
    }

    /// <summary>A soft-cap field: its value, 0 when null (none), <paramref name="fallback"/> when absent (the config class's default).</summary>
    internal static float Softcap(HfConfig c, string key, float fallback)
    {
        float cap = c.IsNull(key) ? 0f : c.GetFloat(key, fallback);
        return cap >= 0 ? cap : throw new ModelFormatException(c.FilePath, null, $"field '{key}': expected a positive soft-cap (or null), found {cap}");
    }

    /// <summary>
    /// What llama.cpp derives for every Gemma 2/3 file rather than reading: embeddings scaled by √d, and the query scale
    /// (hidden / heads)^−½ for the model with <paramref name="layersOf27B"/> layers (27B), head_dim^−½ otherwise.
    /// </summary>
    internal static TransformerConfig WithGemmaGgufTraits(TransformerConfig c, int layersOf27B) =>
        c with { EmbeddingScale = MathF.Sqrt(c.HiddenSize), AttentionScale = GgufAttentionScale(c, layersOf27B) };

    /// <summary>Throws unless <paramref name="c"/> has the √d embedding scale and the query scale llama.cpp derives for the family's files.</summary>
    internal static void RequireGemmaGgufTraits(ArchitectureDescription family, TransformerConfig c, int layersOf27B)
    {
        if (c.EmbeddingScale != MathF.Sqrt(c.HiddenSize) || c.AttentionScale != GgufAttentionScale(c, layersOf27B))
            throw new AgileQuantException(
                $"GGUF export of a '{family.Family}' model needs embeddings scaled by √{c.HiddenSize} and the query scale llama.cpp derives from the layer count ({GgufAttentionScale(c, layersOf27B)}; 0 = head size^−½), found {c.EmbeddingScale} and {c.AttentionScale}.");
    }

    // llama.cpp: f_attention_scale = 27B ? 1/√(n_embd / n_head) : 1/√n_embd_head_k (0 here: the default 1/√HeadDim)
    private static float GgufAttentionScale(TransformerConfig c, int layersOf27B)
    {
        int scalar = c.NumLayers == layersOf27B ? c.HiddenSize / c.NumHeads : c.HeadDim;
        return scalar == c.HeadDim ? 0f : 1f / MathF.Sqrt(scalar);
    }
}
