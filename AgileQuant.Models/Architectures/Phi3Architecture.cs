using AgileQuant.Core.Runtime;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Models.Architectures;

/// <summary>
/// Phi-3 and Phi-3.5 mini / medium (Hugging Face <c>Phi3ForCausalLM</c>, GGUF <c>phi3</c>): LLaMA's computation with the
/// query, key and value projections in one tensor (<c>qkv_proj</c>, GGUF <c>attn_qkv</c>) and gate and up in another
/// (<c>gate_up_proj</c>, GGUF <c>ffn_up</c>, gate first), both concatenated; no biases; RoPE with <c>rope_theta</c> and
/// optionally linear scaling (the <c>longrope</c> / <c>su</c> scaling of the 128k models is refused naming
/// <c>rope_scaling</c>); the sliding window its config sets. GGUF keeps rotate-half Q/K rows (NEOX RoPE in llama.cpp).
/// </summary>
/// <remarks>
/// llama.cpp reads <c>phi3.attention.sliding_window</c> but runs Phi-3 without the window (its loader disables it); this
/// library applies the window as Hugging Face does, so the two agree on sequences up to the window (2047 for Phi-3 mini).
/// </remarks>
internal sealed class Phi3Architecture : ArchitectureDescription
{
    // Before the name maps, which read them.
    private static readonly LayerTensor[] Qkv = [LayerTensor.Query, LayerTensor.Key, LayerTensor.Value];
    private static readonly LayerTensor[] GateUp = [LayerTensor.Gate, LayerTensor.Up];

    /// <inheritdoc />
    public override string Family => "phi3";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfModelTypes { get; } = ["phi3"];

    /// <inheritdoc />
    public override string? GgufArchitecture => "phi3";

    /// <inheritdoc />
    public override IReadOnlyList<string> HfBasePrefixes { get; } = ["model.", ""];

    /// <inheritdoc />
    public override TensorNameMap HfNames { get; } = LlamaArchitecture.LlamaStyleHfNames with
    {
        Layers = LlamaArchitecture.LlamaStyleHfNames.Layers.Where(p => !Qkv.Contains(p.Key) && !GateUp.Contains(p.Key)).ToDictionary(),
        Fused = [new FusedTensor("self_attn.qkv_proj", FusedLayout.Concatenated, Qkv), new FusedTensor("mlp.gate_up_proj", FusedLayout.Concatenated, GateUp)],
    };

    /// <inheritdoc />
    public override IReadOnlyList<string> HfIgnoredSuffixes { get; } = [".rotary_emb.inv_freq"];

    /// <inheritdoc />
    public override TensorNameMap? GgufNames { get; } = TensorNameMap.Gguf with
    {
        Layers = TensorNameMap.Gguf.Layers.Where(p => !Qkv.Contains(p.Key) && !GateUp.Contains(p.Key)).ToDictionary(),
        Fused = [new FusedTensor("attn_qkv", FusedLayout.Concatenated, Qkv), new FusedTensor("ffn_up", FusedLayout.Concatenated, GateUp)],
    };

    /// <inheritdoc />
    public override NormKind Norm => NormKind.RmsNorm;

    /// <inheritdoc />
    public override PositionKind Positions => PositionKind.Rotary;

    /// <inheritdoc />
    public override MlpKind Mlp => MlpKind.SwiGlu;

    /// <inheritdoc />
    public override HeadTying Head => HeadTying.TiedWhenAbsent;

    /// <inheritdoc />
    public override ConfigFeatures GgufFeatures => ConfigFeatures.RotaryScaling | ConfigFeatures.SlidingWindow;

    /// <inheritdoc />
    public override BiasRule Bias(LayerTensor linear) => BiasRule.None;

    /// <inheritdoc />
    public override TransformerConfig ReadHfConfig(HfConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        c.RequireAbsentOrEqual("hidden_act", "silu");
        if (c.GetFloat("partial_rotary_factor", 1f) != 1f)
            throw new ModelFormatException(c.FilePath, null, $"'partial_rotary_factor' is {c.GetFloat("partial_rotary_factor", 1f)}, but only rotary embeddings over the whole head are supported");
        return ReadRotaryHfConfig(c, maxPositions: 4096, normEpsilon: 1e-5f, theta: 10000f, bos: 1, eos: 32000) with
        {
            SlidingWindow = c.GetInt("sliding_window", 0),
        };
    }

    /// <inheritdoc />
    public override TransformerConfig ReadGgufConfig(GgufFile gguf, TransformerConfig common)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        // llama.cpp's converter stores the 128k models' LongRoPE factors as these tensors
        foreach (string name in new[] { "rope_factors_long.weight", "rope_factors_short.weight" })
            if (gguf.FindTensor(name) is not null)
                throw new ModelFormatException(gguf.FilePath, name, "Phi-3's LongRoPE scaling (short and long frequency factors) is not supported");
        return WithGgufSlidingWindow(gguf, common, pattern: 0, fallback: 0);
    }

    /// <inheritdoc />
    public override void WriteGgufConfig(GgufWriter writer, TransformerConfig config) => WriteGgufSlidingWindow(writer, config, pattern: 0);
}
