using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Gemma 3 text models (Hugging Face <c>Gemma3ForCausalLM</c>, <c>model_type</c> <c>gemma3_text</c>; GGUF <c>gemma3</c>):
/// Gemma 2's layer (<c>(1 + w)</c> RMSNorms, GeGLU, √d embedding scale, post-norms, query scale) plus a per-head RMSNorm on
/// the query and key before RoPE, five sliding-window layers (window 512 or 1024) for every global one, the local layers
/// rotating with their own base (<c>rope_local_base_freq</c>, 10000, unscaled) and the global ones with
/// <c>rope_theta</c> (1M) and its linear <c>rope_scaling</c> where set; no attention soft-cap, a final one only where the
/// config sets it. Rotate-half Q/K rows in both formats (NEOX RoPE).
/// </summary>
/// <remarks>
/// llama.cpp's gemma3 loader fixes the layer pattern (6) and the local base (10000) and derives the query scale from the
/// layer count (the 62-layer 27B model: (hidden / heads)^−½); the GGUF writer refuses a model those would not reproduce.
/// </remarks>
internal sealed class Gemma3Architecture : ArchitectureDescription
{
    /// <summary>llama.cpp's layer pattern of gemma3: five local layers, then a global one.</summary>
    private const int LayerPattern = 6;

    /// <summary>The local layers' rotary base, which llama.cpp's gemma3 loader fixes.</summary>
    private const float LocalTheta = 10000f;

    /// <inheritdoc />
    public override string Family => "gemma3";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["gemma3_text"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "gemma3";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = Gemma2Architecture.GemmaHfNames(queryKeyNorm: true);

    /// <inheritdoc />
    public override NormKind Norm => NormKind.RmsNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Rotary;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.GeGlu;

    /// <inheritdoc />
    public override bool QueryKeyNorm => true;

    /// <inheritdoc />
    public override bool PostNorms => true;

    /// <inheritdoc />
    public override float HfNormWeightOffset => 1f;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.Tied;

    /// <inheritdoc />
    public override ConfigFeatures GgufFeatures =>
        ConfigFeatures.HeadSize | ConfigFeatures.RotaryScaling | ConfigFeatures.SlidingWindow | ConfigFeatures.LocalRotaryTheta
        | ConfigFeatures.FinalLogitSoftcap | ConfigFeatures.EmbeddingScale | ConfigFeatures.AttentionScale;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) => BiasRule.None;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig config)
    {
        TransformerConfig c = Gemma2Architecture.ReadGemmaConfig(this, config, defaultPattern: LayerPattern, defaultTheta: 1_000_000f);
        float localTheta = config.GetFloat("rope_local_base_freq", LocalTheta);
        if (!(localTheta > 0)) throw new ModelFormatException(config.FilePath, null, $"field 'rope_local_base_freq': expected a positive number, found {localTheta}");
        return c with
        {
            LocalRotaryTheta = c.SlidingWindow > 0 ? localTheta : 0f,
            AttentionLogitSoftcap = Gemma2Architecture.Softcap(config, "attn_logit_softcapping", 0f),
            FinalLogitSoftcap = Gemma2Architecture.Softcap(config, "final_logit_softcapping", 0f),
        };
    }

    /// <inheritdoc />
    public override TransformerConfig ReadGgufConfig(GgufFile gguf, TransformerConfig common)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        TransformerConfig c = WithGgufSlidingWindow(gguf, common, LayerPattern, fallback: 0);
        return Gemma2Architecture.WithGemmaGgufTraits(c, layersOf27B: 62) with
        {
            LocalRotaryTheta = c.SlidingWindow > 0 ? (float)GgufModelReader.PositiveFloat(gguf, GgufKeyPrefix + "rope.freq_base_swa", LocalTheta) : 0f,
            FinalLogitSoftcap = (float)GgufModelReader.NonNegativeFloat(gguf, GgufKeyPrefix + "final_logit_softcapping", 0),
        };
    }

    /// <inheritdoc />
    public override void WriteGgufConfig(GgufWriter writer, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(config);
        Gemma2Architecture.RequireGemmaGgufTraits(this, config, layersOf27B: 62);
        // llama.cpp's gemma3 without a window applies the final soft-cap unconditionally, and fixes the local base
        if (config.SlidingWindow == 0 || config.LocalRotaryTheta != LocalTheta)
            throw new AgileQuantException(
                $"GGUF export of a 'gemma3' model needs sliding-window layers with the local rotary base {LocalTheta} (as llama.cpp runs gemma3), found window {config.SlidingWindow} and base {config.LocalRotaryTheta}.");
        WriteGgufSlidingWindow(writer, config, LayerPattern);
        if (config.FinalLogitSoftcap > 0) writer.AddFloat32(GgufKeyPrefix + "final_logit_softcapping", config.FinalLogitSoftcap);
    }
}
