using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Qwen2 and Qwen2.5 (Hugging Face <c>Qwen2ForCausalLM</c>, GGUF <c>qwen2</c>): LLaMA's layout and names with biases on the
/// query, key and value projections, grouped-query attention, a head tied when the file omits it (0.5B–3B). GGUF keeps
/// Hugging Face's rotate-half Q/K rows: llama.cpp runs <c>qwen2</c> with NEOX RoPE (<c>llama_model_rope_type</c>).
/// </summary>
internal sealed class Qwen2Architecture : ArchitectureDescription
{
    /// <inheritdoc />
    public override string Family => "qwen2";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["qwen2"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "qwen2";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames => LlamaArchitecture.LlamaStyleHfNames;

    /// <inheritdoc />
    public override IReadOnlyList<string> HfIgnoredSuffixes { get; } = [".rotary_emb.inv_freq"];

    /// <inheritdoc />
    public override NormKind Norm => NormKind.RmsNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Rotary;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.SwiGlu;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.TiedWhenAbsent;

    /// <inheritdoc />
    public override ConfigFeatures GgufFeatures => ConfigFeatures.HeadSize | ConfigFeatures.RotaryScaling;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) =>
        linear is LayerTensor.Query or LayerTensor.Key or LayerTensor.Value ? BiasRule.Always : BiasRule.None;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        RequireQwenTraits(this, config);
        return ReadRotaryHfConfig(config, maxPositions: 32768, normEpsilon: 1e-6f, theta: 10000f, bos: 151643, eos: 151645);
    }

    /// <summary>What Qwen2 and Qwen3 configs must state: SiLU, and no sliding-window layers.</summary>
    internal static void RequireQwenTraits(ArchitectureDescription family, HfConfig c)
    {
        c.RequireAbsentOrEqual("hidden_act", "silu");
        if (c.GetBool("use_sliding_window", false))
            throw new ModelFormatException(c.FilePath, null, $"'use_sliding_window' is true, but {family.Family}'s sliding-window layers (from max_window_layers on) are not supported");
    }
}
