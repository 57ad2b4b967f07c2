using System.Globalization;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Models.Architectures;

/// <summary>A tensor outside the decoder layers, by its role (<see cref="TransformerWeights"/> holds each).</summary>
public enum ModelTensor
{
    /// <summary>Token embedding table (VocabSize, EmbeddingWidth).</summary>
    TokenEmbedding,

    /// <summary>Learned position table (positions, HiddenSize).</summary>
    PositionEmbedding,

    /// <summary>Norm applied to the embeddings (BLOOM).</summary>
    EmbeddingNorm,

    /// <summary>Projection from the embedding width to the hidden size (OPT's project_in).</summary>
    ProjectIn,

    /// <summary>Norm after the last layer.</summary>
    FinalNorm,

    /// <summary>Projection from the hidden size back to the embedding width (OPT's project_out).</summary>
    ProjectOut,

    /// <summary>Language-model head (VocabSize, EmbeddingWidth).</summary>
    LmHead,

    /// <summary>
    /// Per-dimension RoPE frequency factors (HeadDim / 2) as llama.cpp stores Llama 3.1's scaling (<c>rope_freqs</c>); the
    /// runtime takes them from the configuration (<see cref="TransformerConfig.RotaryFrequencyFactors"/>), and a stored copy
    /// is checked against it.
    /// </summary>
    RotaryFrequencies,
}

/// <summary>How the rows of one stored tensor that fuses several linears of a layer are laid out.</summary>
public enum FusedLayout
{
    /// <summary>The parts one after another: rows [0, r₀) are the first part, [r₀, r₀ + r₁) the second, ... (Phi-3's <c>qkv_proj</c>, GGUF's <c>attn_qkv</c>).</summary>
    Concatenated,

    /// <summary>
    /// Per attention head, that head's rows of every part one after another: fused row (h·P + p)·hd + j is row h·hd + j of
    /// part p (BLOOM's <c>query_key_value</c>, [heads, 3, head_dim]); every part has NumHeads·HeadDim rows.
    /// </summary>
    InterleavedByHead,
}

/// <summary>One stored tensor that holds several linears of a layer: split into them on read, joined from them on write.</summary>
/// <param name="Name">Its name inside the layer (as in <see cref="TensorNameMap.Layers"/>), without <c>.weight</c>.</param>
/// <param name="Layout">How its rows are laid out.</param>
/// <param name="Parts">The linears it holds, in stored order.</param>
public sealed record FusedTensor(string Name, FusedLayout Layout, IReadOnlyList<LayerTensor> Parts)
{
    /// <summary>The part and the row inside it that fused row <paramref name="row"/> holds, given each part's row count and the head size.</summary>
    internal (int Part, int Row) Locate(int row, ReadOnlySpan<int> partRows, int headDim)
    {
        if (Layout == FusedLayout.InterleavedByHead)
        {
            int head = row / headDim / Parts.Count, part = row / headDim % Parts.Count;
            return (part, head * headDim + row % headDim);
        }
        int p = 0;
        while (row >= partRows[p]) row -= partRows[p++];
        return (p, row);
    }
}

/// <summary>
/// The tensor names of one file format: those outside the layers, the layer prefix (<c>{0}</c> = the layer index) and
/// the names inside a layer, all without the <c>.weight</c> / <c>.bias</c> suffix the formats add. A role absent
/// here is one the format does not store; a linear listed in <see cref="Fused"/> is stored inside that fused tensor.
/// </summary>
public sealed record TensorNameMap
{
    /// <summary>Prefix of a layer's tensors with <c>{0}</c> for the layer index, e.g. <c>blk.{0}.</c> or <c>layers.{0}.</c>.</summary>
    public required string LayerPrefix { get; init; }

    /// <summary>Names of the tensors outside the layers.</summary>
    public required IReadOnlyDictionary<ModelTensor, string> Globals { get; init; }

    /// <summary>Names of the tensors inside a layer (after <see cref="LayerPrefix"/>), for the roles stored on their own.</summary>
    public required IReadOnlyDictionary<LayerTensor, string> Layers { get; init; }

    /// <summary>Stored tensors that hold several linears each.</summary>
    public IReadOnlyList<FusedTensor> Fused { get; init; } = [];

    /// <summary>The name of <paramref name="tensor"/>, or null when this format does not store it.</summary>
    public string? Global(ModelTensor tensor) => Globals.TryGetValue(tensor, out string? name) ? name : null;

    /// <summary>The name of layer <paramref name="layer"/>'s <paramref name="role"/> stored on its own, or null (fused or not stored).</summary>
    public string? Layer(int layer, LayerTensor role) => Layers.TryGetValue(role, out string? name) ? InLayer(layer, name) : null;

    /// <summary>The full name of <paramref name="name"/> inside layer <paramref name="layer"/>.</summary>
    public string InLayer(int layer, string name) => string.Format(CultureInfo.InvariantCulture, LayerPrefix, layer) + name;

    /// <summary>The fused tensor holding <paramref name="role"/>, or null when it is stored on its own (or not at all).</summary>
    public FusedTensor? FusedWith(LayerTensor role)
    {
        foreach (FusedTensor fused in Fused)
            if (fused.Parts.Contains(role)) return fused;
        return null;
    }

    /// <summary>Whether this format stores <paramref name="role"/>, on its own or fused.</summary>
    public bool Stores(LayerTensor role) => Layers.ContainsKey(role) || FusedWith(role) is not null;

    /// <summary>
    /// llama.cpp's tensor names (<c>LLM_TENSOR_NAMES</c> in src/llama-arch.cpp of ggml-org/llama.cpp), which the GGUF files
    /// of every family use; a family lists its fused tensors on top of these (Phi-3: <c>attn_qkv</c>, <c>ffn_up</c>).
    /// </summary>
    public static TensorNameMap Gguf { get; } = new()
    {
        LayerPrefix = "blk.{0}.",
        Globals = new Dictionary<ModelTensor, string>
        {
            [ModelTensor.TokenEmbedding] = "token_embd",
            [ModelTensor.PositionEmbedding] = "position_embd",
            [ModelTensor.EmbeddingNorm] = "token_embd_norm",
            [ModelTensor.FinalNorm] = "output_norm",
            [ModelTensor.LmHead] = "output",
        },
        Layers = new Dictionary<LayerTensor, string>
        {
            [LayerTensor.AttentionNorm] = "attn_norm",
            [LayerTensor.Query] = "attn_q",
            [LayerTensor.Key] = "attn_k",
            [LayerTensor.Value] = "attn_v",
            [LayerTensor.QueryNorm] = "attn_q_norm",
            [LayerTensor.KeyNorm] = "attn_k_norm",
            [LayerTensor.Output] = "attn_output",
            [LayerTensor.PostAttentionNorm] = "post_attention_norm",
            [LayerTensor.MlpNorm] = "ffn_norm",
            [LayerTensor.Gate] = "ffn_gate",
            [LayerTensor.Up] = "ffn_up",
            [LayerTensor.Down] = "ffn_down",
            [LayerTensor.PostMlpNorm] = "post_ffw_norm",
        },
    };

    /// <summary>
    /// Names in AgileQuant's quantized checkpoints: the runtime's tensors (fused ones already split) under GGUF's short
    /// names, plus <c>project_in</c>, <c>project_out</c> and <c>lm_head</c>; the same for every family.
    /// </summary>
    public static TensorNameMap QuantizedCheckpoint { get; } = Gguf with
    {
        Globals = new Dictionary<ModelTensor, string>(Gguf.Globals)
        {
            [ModelTensor.ProjectIn] = "project_in",
            [ModelTensor.ProjectOut] = "project_out",
            [ModelTensor.LmHead] = "lm_head",
        },
    };
}
