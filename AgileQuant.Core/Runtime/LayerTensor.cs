namespace AgileQuant.Core.Runtime;

/// <summary>
/// One tensor of a decoder layer by its role, in the order the forward pass uses them, which is also the order in
/// which readers and writers go through a layer. Norms and linears share one enumeration so that a format visits a
/// layer in one loop (as llama.cpp's <c>LLM_TENSOR_*</c> list does); <see cref="LayerTensors.IsLinear"/> tells them
/// apart. The file names of each role are in the architecture descriptions of AgileQuant.Models.
/// </summary>
public enum LayerTensor
{
    /// <summary>Norm before attention (pre-LN) or after the attention residual (post-LN): (HiddenSize).</summary>
    AttentionNorm,

    /// <summary>Query projection (NumHeads·HeadDim, HiddenSize).</summary>
    Query,

    /// <summary>Key projection (KvDim, HiddenSize).</summary>
    Key,

    /// <summary>Value projection (KvDim, HiddenSize).</summary>
    Value,

    /// <summary>Per-head RMSNorm of the query before RoPE (Qwen3, Gemma 3): (HeadDim), shared by the heads.</summary>
    QueryNorm,

    /// <summary>Per-head RMSNorm of the key before RoPE (Qwen3, Gemma 3): (HeadDim), shared by the heads.</summary>
    KeyNorm,

    /// <summary>Attention output projection (HiddenSize, NumHeads·HeadDim).</summary>
    Output,

    /// <summary>Norm of the attention output before its residual add (Gemma's post-attention norm): (HiddenSize).</summary>
    PostAttentionNorm,

    /// <summary>Norm before the MLP (pre-LN) or after the MLP residual (post-LN): (HiddenSize).</summary>
    MlpNorm,

    /// <summary>Gate projection of a gated MLP (IntermediateSize, HiddenSize).</summary>
    Gate,

    /// <summary>Up projection / fc1 (IntermediateSize, HiddenSize).</summary>
    Up,

    /// <summary>Down projection / fc2 (HiddenSize, IntermediateSize).</summary>
    Down,

    /// <summary>Norm of the MLP output before its residual add (Gemma's post-feed-forward norm): (HiddenSize).</summary>
    PostMlpNorm,
}

/// <summary>What the runtime knows about each <see cref="LayerTensor"/>: linear or norm, shape, which activation input it reads.</summary>
public static class LayerTensors
{
    /// <summary>Every role, in forward order.</summary>
    public static IReadOnlyList<LayerTensor> All { get; } = Enum.GetValues<LayerTensor>();

    /// <summary>The linear roles, in forward order.</summary>
    public static IReadOnlyList<LayerTensor> Linears { get; } = All.Where(IsLinear).ToArray();

    /// <summary>The norm roles, in forward order.</summary>
    public static IReadOnlyList<LayerTensor> Norms { get; } = All.Where(IsNorm).ToArray();

    /// <summary>Whether <paramref name="role"/> is a norm (a weight vector, and a bias for LayerNorm).</summary>
    public static bool IsNorm(this LayerTensor role) =>
        role is LayerTensor.AttentionNorm or LayerTensor.QueryNorm or LayerTensor.KeyNorm or LayerTensor.PostAttentionNorm or LayerTensor.MlpNorm or LayerTensor.PostMlpNorm;

    /// <summary>Whether <paramref name="role"/> is a linear layer (a weight matrix and an optional bias).</summary>
    public static bool IsLinear(this LayerTensor role) => !role.IsNorm();

    /// <summary>
    /// Whether a layer of <paramref name="config"/> has <paramref name="role"/>: the gate only for a gated MLP, the per-head
    /// query/key norms only with <see cref="TransformerConfig.QueryKeyNorm"/>, the post-norms only with <see cref="TransformerConfig.PostNorms"/>.
    /// </summary>
    public static bool IsRequiredBy(this LayerTensor role, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return role switch
        {
            LayerTensor.Gate => config.Mlp.IsGated(),
            LayerTensor.QueryNorm or LayerTensor.KeyNorm => config.QueryKeyNorm,
            LayerTensor.PostAttentionNorm or LayerTensor.PostMlpNorm => config.PostNorms,
            _ => true,
        };
    }

    /// <summary>(rows = out, cols = in) of the linear <paramref name="role"/> in a model of <paramref name="config"/>.</summary>
    public static (int Rows, int Cols) Shape(this LayerTensor role, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int d = config.HiddenSize, q = config.NumHeads * config.HeadDim, f = config.IntermediateSize;
        return role switch
        {
            LayerTensor.Query => (q, d),
            LayerTensor.Key or LayerTensor.Value => (config.KvDim, d),
            LayerTensor.Output => (d, q),
            LayerTensor.Gate or LayerTensor.Up => (f, d),
            LayerTensor.Down => (d, f),
            _ => throw NotALinear(role),
        };
    }

    /// <summary>Length of the norm <paramref name="role"/>'s weight (and bias) in a model of <paramref name="config"/>.</summary>
    public static int NormWidth(this LayerTensor role, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return role switch
        {
            LayerTensor.QueryNorm or LayerTensor.KeyNorm => config.HeadDim,
            _ => role.IsNorm() ? config.HiddenSize : throw new ArgumentOutOfRangeException(nameof(role), role, "Expected a norm role."),
        };
    }

    /// <summary>The activation input that the linear <paramref name="role"/> reads (shared inputs share a slot).</summary>
    public static LinearSlot InputSlot(this LayerTensor role) => role switch
    {
        LayerTensor.Query or LayerTensor.Key or LayerTensor.Value => LinearSlot.QueryKeyValue,
        LayerTensor.Output => LinearSlot.AttentionOutput,
        LayerTensor.Gate or LayerTensor.Up => LinearSlot.MlpInput,
        LayerTensor.Down => LinearSlot.MlpDown,
        _ => throw NotALinear(role),
    };

    /// <summary>The role in words, as messages name it (<c>query</c>, <c>MLP norm</c>, ...).</summary>
    public static string Describe(this LayerTensor role) => role switch
    {
        LayerTensor.AttentionNorm => "attention norm",
        LayerTensor.Query => "query",
        LayerTensor.Key => "key",
        LayerTensor.Value => "value",
        LayerTensor.QueryNorm => "query norm",
        LayerTensor.KeyNorm => "key norm",
        LayerTensor.Output => "output",
        LayerTensor.PostAttentionNorm => "post-attention norm",
        LayerTensor.MlpNorm => "MLP norm",
        LayerTensor.Gate => "gate",
        LayerTensor.Up => "up",
        LayerTensor.Down => "down",
        LayerTensor.PostMlpNorm => "post-MLP norm",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "Unknown layer tensor."),
    };

    private static ArgumentOutOfRangeException NotALinear(LayerTensor role) => new(nameof(role), role, "Expected a linear role.");
}
