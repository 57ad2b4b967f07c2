using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Models.Architectures;

/// <summary>Whether a family's linear carries a bias.</summary>
public enum BiasRule
{
    /// <summary>Never.</summary>
    None,

    /// <summary>Always (OPT, BLOOM; Qwen2's Q/K/V).</summary>
    Always,

    /// <summary>
    /// When the file stores one: the family's optional biases are all present or all absent, as layer 0's first one
    /// says (LLaMA's <c>attention_bias</c>).
    /// </summary>
    Optional,
}

/// <summary>
/// The features of a <see cref="TransformerConfig"/> beyond the sizes and the family's fixed choices that a file format
/// must state; a family's GGUF form states some of them (<see cref="ArchitectureDescription.GgufFeatures"/>), and the GGUF
/// writer refuses a model that uses one its family's files cannot state.
/// </summary>
[Flags]
public enum ConfigFeatures
{
    /// <summary>None.</summary>
    None = 0,

    /// <summary>A head size other than HiddenSize / NumHeads (GGUF <c>attention.key_length</c>).</summary>
    HeadSize = 1 << 0,

    /// <summary>Linear RoPE scaling (GGUF <c>rope.scaling.type</c> <c>linear</c>, <c>rope.scaling.factor</c>).</summary>
    RotaryScaling = 1 << 1,

    /// <summary>Per-dimension RoPE frequency factors (Llama 3.1's scaling; GGUF tensor <c>rope_freqs</c>).</summary>
    RotaryFrequencyFactors = 1 << 2,

    /// <summary>Sliding-window layers (GGUF <c>attention.sliding_window</c>).</summary>
    SlidingWindow = 1 << 3,

    /// <summary>A rotary base of their own for the sliding-window layers (Gemma 3).</summary>
    LocalRotaryTheta = 1 << 4,

    /// <summary>Attention logit soft-capping (Gemma 2).</summary>
    AttentionLogitSoftcap = 1 << 5,

    /// <summary>Final logit soft-capping (Gemma 2).</summary>
    FinalLogitSoftcap = 1 << 6,

    /// <summary>Embeddings scaled by √HiddenSize (Gemma).</summary>
    EmbeddingScale = 1 << 7,

    /// <summary>An attention scale other than 1/√HeadDim (Gemma's <c>query_pre_attn_scalar</c>).</summary>
    AttentionScale = 1 << 8,
}

/// <summary>What <see cref="ConfigFeatures"/> a configuration uses.</summary>
public static class ConfigFeatureSet
{
    /// <summary>The features <paramref name="c"/> uses.</summary>
    public static ConfigFeatures Of(TransformerConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var used = ConfigFeatures.None;
        if (c.HeadSize > 0 && c.HeadSize * c.NumHeads != c.HiddenSize) used |= ConfigFeatures.HeadSize;
        if (c.RotaryScalingFactor != 1f) used |= ConfigFeatures.RotaryScaling;
        if (c.RotaryFrequencyFactors is not null) used |= ConfigFeatures.RotaryFrequencyFactors;
        if (c.SlidingWindow > 0) used |= ConfigFeatures.SlidingWindow;
        if (c.LocalRotaryTheta > 0) used |= ConfigFeatures.LocalRotaryTheta;
        if (c.AttentionLogitSoftcap > 0) used |= ConfigFeatures.AttentionLogitSoftcap;
        if (c.FinalLogitSoftcap > 0) used |= ConfigFeatures.FinalLogitSoftcap;
        if (c.EmbeddingScale != 1f) used |= ConfigFeatures.EmbeddingScale;
        if (c.AttentionScale > 0) used |= ConfigFeatures.AttentionScale;
        return used;
    }
}

/// <summary>How the language-model head relates to the token embedding.</summary>
public enum HeadTying
{
    /// <summary>The head is the embedding table; a stored copy (some exports keep one) is shape-checked and dropped (OPT, BLOOM).</summary>
    Tied,

    /// <summary>The head is stored unless the model ties it, and then the file omits it (LLaMA; <c>tie_word_embeddings</c>).</summary>
    TiedWhenAbsent,
}

/// <summary>
/// One model family as every reader and writer sees it: its names in each format (Hugging Face <c>model_type</c> and
/// tensor names, GGUF <c>general.architecture</c>, key prefix and tensor names, quantized-checkpoint names), the
/// choices by which it differs from other families (norm, positions, MLP, biases, tied head, the GGUF Q/K row
/// layout), and how its configuration is read from <c>config.json</c> and GGUF metadata. Hugging Face safetensors
/// loading, <see cref="GgufModelReader"/>, <see cref="GgufModelWriter"/> and the quantized-checkpoint reader and
/// writer all work from these descriptions, looked up in <see cref="ArchitectureRegistry"/>; adding a family is one
/// new description (docs/architecture.md, "How to add an architecture").
/// </summary>
/// <remarks>
/// The runtime weights that a description fills (<see cref="TransformerWeights"/>, whose layer tensors are the roles of
/// <see cref="LayerTensor"/>) are the same for every family, so the quantized checkpoint, which stores them, names
/// them the same way for every family (<see cref="TensorNameMap.QuantizedCheckpoint"/>).
/// </remarks>
public abstract class ArchitectureDescription
{
    /// <summary>Only this assembly defines families (each registered in <see cref="ArchitectureRegistry"/>).</summary>
    private protected ArchitectureDescription()
    {
    }

    /// <summary>The family name: <see cref="TransformerConfig.Family"/> of the models it reads, e.g. <c>llama</c>.</summary>
    public abstract string Family { get; }

    /// <summary>The Hugging Face <c>config.json</c> <c>model_type</c> values of this family.</summary>
    public abstract IReadOnlyList<string> HfModelTypes { get; }

    /// <summary>The GGUF <c>general.architecture</c> value of this family, or null when llama.cpp has no such architecture.</summary>
    public virtual string? GgufArchitecture => null;

    /// <summary>The prefix of this family's GGUF hyper-parameter keys (<c>llama.</c> in <c>llama.block_count</c>), or null without a GGUF form.</summary>
    public string? GgufKeyPrefix => GgufArchitecture is null ? null : GgufArchitecture + ".";

    /// <summary>Prefixes under which Hugging Face checkpoints of this family store the base model's tensors (all but <c>lm_head</c>), preferred first.</summary>
    public abstract IReadOnlyList<string> HfBasePrefixes { get; }

    /// <summary>Tensor names in Hugging Face safetensors, relative to the base prefix except the LM head (which sits beside the base model).</summary>
    public abstract TensorNameMap HfNames { get; }

    /// <summary>Hugging Face tensors that carry nothing the runtime uses (e.g. cached rotary frequencies), by name suffix.</summary>
    public virtual IReadOnlyList<string> HfIgnoredSuffixes => [];

    /// <summary>Tensor names in GGUF files (llama.cpp's, <see cref="TensorNameMap.Gguf"/>, plus any fused tensors of the family), or null without a GGUF form.</summary>
    public virtual TensorNameMap? GgufNames => GgufArchitecture is null ? null : TensorNameMap.Gguf;

    /// <summary>Tensor names in AgileQuant quantized checkpoints (the same for every family).</summary>
    public TensorNameMap CheckpointNames => TensorNameMap.QuantizedCheckpoint;

    /// <summary>The family's normalisation.</summary>
    public abstract NormKind Norm { get; }

    /// <summary>The family's position scheme.</summary>
    public abstract PositionKind Positions { get; }

    /// <summary>The family's feed-forward block.</summary>
    public abstract MlpKind Mlp { get; }

    /// <summary>Whether a norm follows the token embedding (BLOOM).</summary>
    public virtual bool EmbeddingNorm => false;

    /// <summary>Whether each head's query and key are RMS-normalised before RoPE (Qwen3, Gemma 3; <see cref="TransformerConfig.QueryKeyNorm"/>).</summary>
    public virtual bool QueryKeyNorm => false;

    /// <summary>Whether the attention and MLP outputs are normalised before their residual adds (Gemma; <see cref="TransformerConfig.PostNorms"/>).</summary>
    public virtual bool PostNorms => false;

    /// <summary>
    /// Added to every norm weight read from a Hugging Face checkpoint of the family: Gemma stores w for RMSNorm's
    /// <c>(1 + w)</c>, and the runtime holds <c>1 + w</c> (computed in FP32 once, as Hugging Face does per call), as GGUF
    /// files of Gemma do (llama.cpp's converter adds the 1). 0 for the others.
    /// </summary>
    public virtual float HfNormWeightOffset => 0f;

    /// <summary>The <see cref="ConfigFeatures"/> this family's GGUF files state; the GGUF writer refuses a model using any other.</summary>
    public virtual ConfigFeatures GgufFeatures => ConfigFeatures.None;

    /// <summary>
    /// How the Q and K rows of this family's GGUF files pair elements for RoPE. Hugging Face checkpoints are always
    /// <see cref="RotaryPairing.RotateHalf"/>; llama.cpp's converter permutes LLaMA's back to Meta's
    /// <see cref="RotaryPairing.Adjacent"/> layout (<c>LlamaModel.permute</c>) but keeps the rotate-half layout of the
    /// families it runs with NEOX RoPE (Qwen2, Phi-3, Gemma).
    /// </summary>
    public virtual RotaryPairing GgufRotaryPairing => RotaryPairing.RotateHalf;

    /// <summary>How the LM head relates to the token embedding.</summary>
    public abstract HeadTying Head { get; }

    /// <summary>Whether the linear <paramref name="linear"/> carries a bias.</summary>
    public abstract BiasRule Bias(LayerTensor linear);

    /// <summary>The runtime configuration of a Hugging Face <c>config.json</c> of this family.</summary>
    /// <exception cref="ModelFormatException">A field is missing, malformed, or asks for something not supported.</exception>
    public abstract TransformerConfig ReadHfConfig(HfConfig config);

    /// <summary>
    /// Completes <paramref name="common"/>, which <see cref="GgufModelReader.ReadConfig(GgufFile)"/> read from the keys every
    /// family shares (sizes, epsilon, RoPE base, token ids), with this family's own GGUF keys; by default nothing to add.
    /// </summary>
    /// <exception cref="ModelFormatException">A key of the family is malformed or asks for something not supported.</exception>
    public virtual TransformerConfig ReadGgufConfig(GgufFile gguf, TransformerConfig common) => common;

    /// <summary>
    /// Adds this family's own GGUF keys for <paramref name="config"/> after the shared ones <see cref="GgufModelWriter"/> writes;
    /// by default none. Throws <see cref="Core.AgileQuantException"/> when a value of <paramref name="config"/> is one the
    /// family's GGUF files (as llama.cpp reads them) cannot state.
    /// </summary>
    public virtual void WriteGgufConfig(GgufWriter writer, TransformerConfig config)
    {
    }

    /// <summary>The description's name.</summary>
    public override string ToString() => Family;

    /// <summary>
    /// <paramref name="common"/> with the sliding window of GGUF key <c>{arch}.attention.sliding_window</c> (<paramref name="fallback"/>
    /// when absent) on the layers of <paramref name="pattern"/> (<see cref="TransformerConfig.SlidingWindowPattern"/>).
    /// </summary>
    private protected TransformerConfig WithGgufSlidingWindow(GgufFile gguf, TransformerConfig common, int pattern, int fallback)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentNullException.ThrowIfNull(common);
        int window = GgufModelReader.NonNegativeInt(gguf, GgufKeyPrefix + "attention.sliding_window", fallback);
        return common with { SlidingWindow = window, SlidingWindowPattern = window > 0 ? pattern : 0 };
    }

    /// <summary>
    /// Writes <c>{arch}.attention.sliding_window</c> when <paramref name="config"/> has a window; throws unless its layers are
    /// those of <paramref name="pattern"/>, the only arrangement llama.cpp gives the family's files.
    /// </summary>
    private protected void WriteGgufSlidingWindow(GgufWriter writer, TransformerConfig config, int pattern)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(config);
        if (config.SlidingWindow == 0) return;
        if (config.SlidingWindowPattern != pattern)
            throw new AgileQuantException(
                $"GGUF export of a '{Family}' model states a sliding window with the layer pattern {pattern} (llama.cpp's for {GgufArchitecture}), found the pattern {config.SlidingWindowPattern}.");
        writer.AddUInt32(GgufKeyPrefix + "attention.sliding_window", (uint)config.SlidingWindow);
    }

    /// <summary>
    /// The <c>config.json</c> keys LLaMA introduced and the later decoder families keep (Mistral, Qwen, Phi-3, Gemma):
    /// <c>vocab_size</c>, <c>hidden_size</c>, <c>intermediate_size</c>, <c>num_hidden_layers</c>, <c>num_attention_heads</c>,
    /// <c>num_key_value_heads</c> (default: the head count), <c>head_dim</c>, <c>max_position_embeddings</c>,
    /// <c>rms_norm_eps</c>, <c>rope_theta</c> / <c>rope_scaling</c> (<see cref="ReadRope"/>), <c>bos_token_id</c>,
    /// <c>eos_token_id</c>; the family's norm, rotary positions (rotate-half rows), MLP, q/k norms and post-norms. The
    /// defaults are the family's config class's.
    /// </summary>
    internal TransformerConfig ReadRotaryHfConfig(HfConfig c, int maxPositions, float normEpsilon, float theta, int bos, int eos,
        int defaultHeadDim = 0, bool llama3 = false)
    {
        ArgumentNullException.ThrowIfNull(c);
        int heads = c.GetInt("num_attention_heads"), hidden = c.GetInt("hidden_size"), kvHeads = c.GetInt("num_key_value_heads", heads);
        if (heads <= 0) throw new ModelFormatException(c.FilePath, null, $"field 'num_attention_heads': expected a positive head count, found {heads}");
        if (!c.Has("head_dim") && defaultHeadDim == 0 && hidden % heads != 0)
            throw new ModelFormatException(c.FilePath, null, $"field 'num_attention_heads' = {heads} does not divide 'hidden_size' = {hidden}, and no 'head_dim' gives the head size");
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelFormatException(c.FilePath, null, $"fields 'num_key_value_heads' = {kvHeads} and 'num_attention_heads' = {heads}: expected a positive key/value head count that divides the head count");
        int headDim = c.GetInt("head_dim", defaultHeadDim > 0 ? defaultHeadDim : hidden / heads);
        if (headDim <= 0) throw new ModelFormatException(c.FilePath, null, $"field 'head_dim': expected a positive integer, found {headDim}");
        (float ropeTheta, float linear, RotaryFrequencyFactors? factors) = ReadRope(c, headDim, theta, llama3);
        return new TransformerConfig
        {
            Family = Family,
            VocabSize = c.GetInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = c.GetInt("intermediate_size"),
            NumLayers = c.GetInt("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadSize = (long)headDim * heads == hidden ? 0 : headDim,
            MaxSequenceLength = c.GetInt("max_position_embeddings", maxPositions),
            Norm = Norm,
            NormEpsilon = c.GetFloat("rms_norm_eps", normEpsilon),
            Positions = Positions,
            RotaryPairing = RotaryPairing.RotateHalf,
            RotaryTheta = ropeTheta,
            RotaryScalingFactor = linear,
            RotaryFrequencyFactors = factors,
            Mlp = Mlp,
            QueryKeyNorm = QueryKeyNorm,
            PostNorms = PostNorms,
            BosTokenId = c.GetFirstInt("bos_token_id", bos),
            EosTokenId = c.GetFirstInt("eos_token_id", eos),
        };
    }

    /// <summary>
    /// Which layers of a <c>config.json</c> use the sliding window, as <see cref="TransformerConfig.SlidingWindowPattern"/>:
    /// from <c>layer_types</c> (<c>sliding_attention</c> / <c>full_attention</c> per layer) when present, which must follow
    /// one such pattern; else <c>sliding_window_pattern</c>; else <paramref name="defaultPattern"/>. Null when
    /// <c>layer_types</c> has no sliding layer.
    /// </summary>
    private protected static int? ReadSlidingWindowPattern(HfConfig c, int layers, int defaultPattern)
    {
        IReadOnlyList<string>? types = c.GetStringList("layer_types");
        if (types is null) return c.GetInt("sliding_window_pattern", defaultPattern);
        if (types.Count != layers || types.Any(t => t is not ("sliding_attention" or "full_attention")))
            throw new ModelFormatException(c.FilePath, null,
                $"field 'layer_types': expected {layers} entries of 'sliding_attention' or 'full_attention', found {types.Count}: {string.Join(", ", types.Distinct().Take(3))}");
        if (types.All(t => t == "full_attention")) return null;
        for (int pattern = 0; pattern <= layers + 1; pattern++)
        {
            int n = pattern;
            if (n != 1 && Enumerable.Range(0, layers).All(l => (n == 0 || l % n < n - 1) == (types[l] == "sliding_attention"))) return n;
        }
        throw new ModelFormatException(c.FilePath, null,
            "field 'layer_types': expected sliding-window layers with every n-th layer global (as Gemma's), found another arrangement (not supported)");
    }

    /// <summary>
    /// The RoPE base and scaling of a <c>config.json</c>: <c>rope_theta</c> and <c>rope_scaling</c> (or the flat
    /// <c>rope_parameters</c> newer transformers write), as <c>(θ, linear factor, frequency factors)</c>. Types:
    /// <c>default</c>; <c>linear</c> (<c>factor</c>); <c>llama3</c> (<c>factor</c>, <c>low_freq_factor</c>, <c>high_freq_factor</c>,
    /// <c>original_max_position_embeddings</c>) when <paramref name="llama3"/>; any other is refused naming the key.
    /// </summary>
    private protected static (float Theta, float LinearFactor, RotaryFrequencyFactors? Factors) ReadRope(HfConfig c, int headDim, float defaultTheta, bool llama3)
    {
        HfConfig? parameters = c.Section("rope_parameters");
        HfConfig? scaling = parameters ?? c.Section("rope_scaling");
        float theta = (parameters ?? c).GetFloat("rope_theta", defaultTheta);
        if (!(float.IsFinite(theta) && theta > 0 && theta <= ConfigValueChecks.MaxRotaryBase))
            throw new ModelFormatException(c.FilePath, null, $"{(parameters ?? c).KeyName("rope_theta")}: expected a finite RoPE base in (0, {ConfigValueChecks.MaxRotaryBase:0e0}], found {theta}");
        if (scaling is null) return (theta, 1f, null);
        string typeKey = scaling.Has("rope_type") ? "rope_type" : "type";
        string type = scaling.GetString(typeKey);
        string supported = llama3 ? "'default', 'linear' or 'llama3'" : "'default' or 'linear'";
        float Factor()
        {
            float factor = scaling.GetFloat("factor", float.NaN);
            return factor >= 1 ? factor
                : throw new ModelFormatException(c.FilePath, null, $"field '{scaling.KeyName("factor")}': expected a RoPE scaling factor ≥ 1, found {factor}");
        }
        switch (type)
        {
            case "default":
                return (theta, 1f, null);
            case "linear":
                return (theta, Factor(), null);
            case "llama3" when llama3:
                float factor = Factor(), low = scaling.GetFloat("low_freq_factor", 1f), high = scaling.GetFloat("high_freq_factor", 4f);
                int original = scaling.GetInt("original_max_position_embeddings", 8192);
                if (!(low > 0 && high > low) || original <= 0)
                    throw new ModelFormatException(c.FilePath, null,
                        $"fields '{scaling.KeyName("low_freq_factor")}', 'high_freq_factor', 'original_max_position_embeddings': expected 0 < low < high and a positive context, found {low}, {high} and {original}");
                return (theta, 1f, RotaryFrequencyFactors.Llama3(headDim, theta, factor, low, high, original));
            default:
                throw new ModelFormatException(c.FilePath, null, $"'{scaling.KeyName(typeKey)}' is '{type}', but only {supported} RoPE scaling is supported");
        }
    }
}
