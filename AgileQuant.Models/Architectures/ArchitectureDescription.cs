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

    /// <summary>Adds this family's own GGUF keys for <paramref name="config"/> after the shared ones <see cref="GgufModelWriter"/> writes; by default none.</summary>
    public virtual void WriteGgufConfig(GgufWriter writer, TransformerConfig config)
    {
    }

    /// <summary>The description's name.</summary>
    public override string ToString() => Family;
}
