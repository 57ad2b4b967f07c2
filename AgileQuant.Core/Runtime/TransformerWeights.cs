namespace AgileQuant.Core.Runtime;

/// <summary>The weights of one decoder layer. Immutable once built; shared by every inference context.</summary>
public sealed class LayerWeights
{
    /// <summary>Norm before attention (pre-LN) or after the attention residual (post-LN).</summary>
    public required NormLayer AttentionNorm { get; init; }

    /// <summary>Query projection (NumHeads·HeadDim, HiddenSize).</summary>
    public required LinearLayer Query { get; init; }

    /// <summary>Key projection (KvDim, HiddenSize).</summary>
    public required LinearLayer Key { get; init; }

    /// <summary>Value projection (KvDim, HiddenSize).</summary>
    public required LinearLayer Value { get; init; }

    /// <summary>Attention output projection (HiddenSize, NumHeads·HeadDim).</summary>
    public required LinearLayer Output { get; init; }

    /// <summary>Norm before the MLP (pre-LN) or after the MLP residual (post-LN).</summary>
    public required NormLayer MlpNorm { get; init; }

    /// <summary>SwiGLU gate projection (IntermediateSize, HiddenSize); null for non-gated MLPs.</summary>
    public LinearLayer? Gate { get; init; }

    /// <summary>Up projection / fc1 (IntermediateSize, HiddenSize).</summary>
    public required LinearLayer Up { get; init; }

    /// <summary>Down projection / fc2 (HiddenSize, IntermediateSize).</summary>
    public required LinearLayer Down { get; init; }
}

/// <summary>
/// All weights of a decoder model plus its configuration. Immutable and thread-safe to share: every
/// per-conversation state lives in <see cref="InferenceContext"/>.
/// </summary>
public sealed class TransformerWeights
{
    /// <summary>The architecture these weights fill.</summary>
    public required TransformerConfig Config { get; init; }

    /// <summary>Token embedding table (VocabSize, EmbeddingWidth), row-major.</summary>
    public required float[] TokenEmbedding { get; init; }

    /// <summary>Learned position table (positions, HiddenSize) for <see cref="PositionKind.Learned"/>; row index = position + offset.</summary>
    public float[]? PositionEmbedding { get; init; }

    /// <summary>LayerNorm applied to the embeddings (BLOOM), or null.</summary>
    public NormLayer? EmbeddingNorm { get; init; }

    /// <summary>Projection from the embedding width to the hidden size (OPT project_in), or null.</summary>
    public LinearLayer? ProjectIn { get; init; }

    /// <summary>The decoder layers, first to last.</summary>
    public required IReadOnlyList<LayerWeights> Layers { get; init; }

    /// <summary>Norm after the last layer, or null.</summary>
    public NormLayer? FinalNorm { get; init; }

    /// <summary>Projection from the hidden size back to the embedding width (OPT project_out), or null.</summary>
    public LinearLayer? ProjectOut { get; init; }

    /// <summary>Language-model head (VocabSize, EmbeddingWidth).</summary>
    public required LinearLayer LmHead { get; init; }

    /// <summary>Total bytes of the weight matrices as the kernels stream them (embeddings counted as FP32).</summary>
    public long WeightBytes
    {
        get
        {
            long bytes = (long)TokenEmbedding.Length * sizeof(float) + LmHead.Weight.ByteCount;
            foreach (LayerWeights l in Layers)
                bytes += l.Query.Weight.ByteCount + l.Key.Weight.ByteCount + l.Value.Weight.ByteCount + l.Output.Weight.ByteCount
                    + (l.Gate?.Weight.ByteCount ?? 0) + l.Up.Weight.ByteCount + l.Down.Weight.ByteCount;
            return bytes;
        }
    }

    /// <summary>Checks every tensor's shape against <see cref="Config"/>; throws <see cref="AgileQuantException"/> naming the first mismatch.</summary>
    public void Validate()
    {
        TransformerConfig c = Config;
        c.Validate();
        int qDim = c.NumHeads * c.HeadDim;
        CheckLength("token embedding", TokenEmbedding.Length, (long)c.VocabSize * c.EmbeddingWidth);
        if (c.NumLayers != Layers.Count) throw new AgileQuantException($"Expected {c.NumLayers} layers, found {Layers.Count}.");
        if (c.Positions == PositionKind.Learned && PositionEmbedding is null) throw new AgileQuantException("Learned positions need a position-embedding table.");
        if (PositionEmbedding is not null && PositionEmbedding.Length % c.HiddenSize != 0)
            throw new AgileQuantException($"Position embedding has {PositionEmbedding.Length} elements, not a multiple of the hidden size {c.HiddenSize}.");
        for (int i = 0; i < Layers.Count; i++)
        {
            LayerWeights l = Layers[i];
            CheckLinear($"layer {i} query", l.Query, qDim, c.HiddenSize);
            CheckLinear($"layer {i} key", l.Key, c.KvDim, c.HiddenSize);
            CheckLinear($"layer {i} value", l.Value, c.KvDim, c.HiddenSize);
            CheckLinear($"layer {i} output", l.Output, c.HiddenSize, qDim);
            if (c.Mlp == MlpKind.SwiGlu)
            {
                if (l.Gate is null) throw new AgileQuantException($"Layer {i}: a SwiGLU MLP needs a gate projection.");
                CheckLinear($"layer {i} gate", l.Gate, c.IntermediateSize, c.HiddenSize);
            }
            CheckLinear($"layer {i} up", l.Up, c.IntermediateSize, c.HiddenSize);
            CheckLinear($"layer {i} down", l.Down, c.HiddenSize, c.IntermediateSize);
            CheckLength($"layer {i} attention norm", l.AttentionNorm.Weight.Length, c.HiddenSize);
            CheckLength($"layer {i} MLP norm", l.MlpNorm.Weight.Length, c.HiddenSize);
        }
        CheckLinear("LM head", LmHead, c.VocabSize, c.EmbeddingWidth);
        if (c.EmbeddingWidth != c.HiddenSize && (ProjectIn is null || ProjectOut is null))
            throw new AgileQuantException($"Embedding width {c.EmbeddingWidth} differs from hidden size {c.HiddenSize}, so project_in and project_out are required.");
        if (ProjectIn is not null) CheckLinear("project_in", ProjectIn, c.HiddenSize, c.EmbeddingWidth);
        if (ProjectOut is not null) CheckLinear("project_out", ProjectOut, c.EmbeddingWidth, c.HiddenSize);
    }

    private static void CheckLinear(string what, LinearLayer layer, int rows, int cols)
    {
        if (layer.OutFeatures != rows || layer.InFeatures != cols)
            throw new AgileQuantException($"The {what} weight has shape [{layer.OutFeatures}, {layer.InFeatures}], expected [{rows}, {cols}].");
    }

    private static void CheckLength(string what, long found, long expected)
    {
        if (found != expected) throw new AgileQuantException($"The {what} has {found} elements, expected {expected}.");
    }
}
