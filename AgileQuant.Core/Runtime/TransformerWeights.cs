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

    /// <summary>Per-head RMSNorm of the query (HeadDim), or null (<see cref="TransformerConfig.QueryKeyNorm"/>).</summary>
    public NormLayer? QueryNorm { get; init; }

    /// <summary>Per-head RMSNorm of the key (HeadDim), or null (<see cref="TransformerConfig.QueryKeyNorm"/>).</summary>
    public NormLayer? KeyNorm { get; init; }

    /// <summary>Attention output projection (HiddenSize, NumHeads·HeadDim).</summary>
    public required LinearLayer Output { get; init; }

    /// <summary>Norm of the attention output before the residual add, or null (<see cref="TransformerConfig.PostNorms"/>).</summary>
    public NormLayer? PostAttentionNorm { get; init; }

    /// <summary>Norm before the MLP (pre-LN) or after the MLP residual (post-LN).</summary>
    public required NormLayer MlpNorm { get; init; }

    /// <summary>Gate projection of a gated MLP (SwiGLU, GeGLU) (IntermediateSize, HiddenSize); null for non-gated MLPs.</summary>
    public LinearLayer? Gate { get; init; }

    /// <summary>Up projection / fc1 (IntermediateSize, HiddenSize).</summary>
    public required LinearLayer Up { get; init; }

    /// <summary>Down projection / fc2 (HiddenSize, IntermediateSize).</summary>
    public required LinearLayer Down { get; init; }

    /// <summary>Norm of the MLP output before the residual add, or null (<see cref="TransformerConfig.PostNorms"/>).</summary>
    public NormLayer? PostMlpNorm { get; init; }

    /// <summary>The norm in the place of <paramref name="role"/>; null when the layer has none there or <paramref name="role"/> is a linear.</summary>
    public NormLayer? Norm(LayerTensor role) => role switch
    {
        LayerTensor.AttentionNorm => AttentionNorm,
        LayerTensor.QueryNorm => QueryNorm,
        LayerTensor.KeyNorm => KeyNorm,
        LayerTensor.PostAttentionNorm => PostAttentionNorm,
        LayerTensor.MlpNorm => MlpNorm,
        LayerTensor.PostMlpNorm => PostMlpNorm,
        _ => null,
    };

    /// <summary>The linear in the place of <paramref name="role"/>; null when the layer has none there (no gate) or <paramref name="role"/> is a norm.</summary>
    public LinearLayer? Linear(LayerTensor role) => role switch
    {
        LayerTensor.Query => Query,
        LayerTensor.Key => Key,
        LayerTensor.Value => Value,
        LayerTensor.Output => Output,
        LayerTensor.Gate => Gate,
        LayerTensor.Up => Up,
        LayerTensor.Down => Down,
        _ => null,
    };

    /// <summary>The linears this layer has, with their roles, in forward order.</summary>
    public IEnumerable<(LayerTensor Role, LinearLayer Linear)> Linears
    {
        get
        {
            foreach (LayerTensor role in LayerTensors.Linears)
                if (Linear(role) is { } linear) yield return (role, linear);
        }
    }

    /// <summary>
    /// A layer from its tensors by role: <paramref name="norm"/> and <paramref name="linear"/> are asked once for each
    /// role in forward order and return null where the layer has nothing (only an optional role may be null).
    /// </summary>
    /// <exception cref="ArgumentException">A required role was given no tensor.</exception>
    public static LayerWeights FromParts(Func<LayerTensor, NormLayer?> norm, Func<LayerTensor, LinearLayer?> linear)
    {
        ArgumentNullException.ThrowIfNull(norm);
        ArgumentNullException.ThrowIfNull(linear);
        return new LayerWeights
        {
            AttentionNorm = Required(norm(LayerTensor.AttentionNorm), LayerTensor.AttentionNorm),
            Query = Required(linear(LayerTensor.Query), LayerTensor.Query),
            Key = Required(linear(LayerTensor.Key), LayerTensor.Key),
            Value = Required(linear(LayerTensor.Value), LayerTensor.Value),
            QueryNorm = norm(LayerTensor.QueryNorm),
            KeyNorm = norm(LayerTensor.KeyNorm),
            Output = Required(linear(LayerTensor.Output), LayerTensor.Output),
            PostAttentionNorm = norm(LayerTensor.PostAttentionNorm),
            MlpNorm = Required(norm(LayerTensor.MlpNorm), LayerTensor.MlpNorm),
            Gate = linear(LayerTensor.Gate),
            Up = Required(linear(LayerTensor.Up), LayerTensor.Up),
            Down = Required(linear(LayerTensor.Down), LayerTensor.Down),
            PostMlpNorm = norm(LayerTensor.PostMlpNorm),
        };
    }

    /// <summary>This layer with every norm and linear replaced by what <paramref name="norm"/> and <paramref name="linear"/> make of it (in forward order); absent ones stay absent.</summary>
    public LayerWeights Map(Func<LayerTensor, NormLayer, NormLayer> norm, Func<LayerTensor, LinearLayer, LinearLayer> linear)
    {
        ArgumentNullException.ThrowIfNull(norm);
        ArgumentNullException.ThrowIfNull(linear);
        return FromParts(role => Norm(role) is { } n ? norm(role, n) : null, role => Linear(role) is { } l ? linear(role, l) : null);
    }

    /// <summary>This layer with every linear replaced by what <paramref name="linear"/> makes of it (in forward order); the norms are kept.</summary>
    public LayerWeights MapLinears(Func<LayerTensor, LinearLayer, LinearLayer> linear) => Map((_, n) => n, linear);

    private static T Required<T>(T? part, LayerTensor role) where T : class =>
        part ?? throw new ArgumentException($"A decoder layer needs its {role.Describe()}, found none.", nameof(part));
}

/// <summary>
/// All weights of a decoder model plus its configuration. Immutable and thread-safe to share: every
/// per-conversation state lives in <see cref="InferenceContext"/>.
/// </summary>
public sealed class TransformerWeights
{
    /// <summary>The architecture these weights fill.</summary>
    public required TransformerConfig Config { get; init; }

    /// <summary>
    /// Token embedding table (VocabSize, EmbeddingWidth), row-major FP32; null when <see cref="StoredTokenEmbedding"/> holds
    /// the table instead (exactly one of the two is set).
    /// </summary>
    public float[]? TokenEmbedding { get; init; }

    /// <summary>
    /// The token embedding table in a compact stored form whose rows are dequantized on lookup (a GGUF file's quantized
    /// blocks), or null when <see cref="TokenEmbedding"/> holds it in FP32.
    /// </summary>
    public IEmbeddingRows? StoredTokenEmbedding { get; init; }

    /// <summary>Bytes the token embedding table holds (FP32, or the stored form).</summary>
    public long TokenEmbeddingBytes => StoredTokenEmbedding?.ByteCount ?? (long)(TokenEmbedding?.Length ?? 0) * sizeof(float);

    /// <summary>Writes the embedding row of <paramref name="token"/> (EmbeddingWidth values) into <paramref name="destination"/>.</summary>
    public void CopyTokenEmbedding(int token, Span<float> destination)
    {
        if (StoredTokenEmbedding is { } stored) stored.DequantizeRow(token, destination);
        else EmbeddingTable.AsSpan(token * destination.Length, destination.Length).CopyTo(destination);
    }

    /// <summary>
    /// The whole token embedding table in FP32 (VocabSize, EmbeddingWidth): <see cref="TokenEmbedding"/> itself, or a new
    /// array of every row of <see cref="StoredTokenEmbedding"/> dequantized (for writers and checks that need the table).
    /// </summary>
    public float[] TokenEmbeddingAsFloats()
    {
        if (StoredTokenEmbedding is not { } stored) return EmbeddingTable;
        var table = new float[(long)stored.Rows * stored.Width]; // (Rows, Width)
        for (int r = 0; r < stored.Rows; r++) stored.DequantizeRow(r, table.AsSpan(r * stored.Width, stored.Width));
        return table;
    }

    private float[] EmbeddingTable => TokenEmbedding ?? throw new AgileQuantException("The weights hold no token embedding table (neither TokenEmbedding nor StoredTokenEmbedding).");

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

    /// <summary>Total bytes of the weight matrices as the kernels stream them, plus the token embedding table as held.</summary>
    public long WeightBytes
    {
        get
        {
            long bytes = TokenEmbeddingBytes + LmHead.Weight.ByteCount;
            foreach (LayerWeights l in Layers)
                foreach ((_, LinearLayer linear) in l.Linears) bytes += linear.Weight.ByteCount;
            return bytes;
        }
    }

    /// <summary>Checks every tensor's shape against <see cref="Config"/>; throws <see cref="AgileQuantException"/> naming the first mismatch.</summary>
    public void Validate()
    {
        TransformerConfig c = Config;
        c.Validate();
        if ((TokenEmbedding is null) == (StoredTokenEmbedding is null))
            throw new AgileQuantException("Expected exactly one token embedding table (TokenEmbedding or StoredTokenEmbedding), found " + (TokenEmbedding is null ? "none." : "both."));
        if (StoredTokenEmbedding is { } stored && (stored.Rows != c.VocabSize || stored.Width != c.EmbeddingWidth))
            throw new AgileQuantException($"Expected a stored token embedding of ({c.VocabSize}, {c.EmbeddingWidth}), found ({stored.Rows}, {stored.Width}).");
        if (TokenEmbedding is not null) CheckLength("token embedding", TokenEmbedding.Length, (long)c.VocabSize * c.EmbeddingWidth);
        if (c.NumLayers != Layers.Count) throw new AgileQuantException($"Expected {c.NumLayers} layers, found {Layers.Count}.");
        if (c.Positions == PositionKind.Learned && PositionEmbedding is null) throw new AgileQuantException("Learned positions need a position-embedding table.");
        if (PositionEmbedding is not null && PositionEmbedding.Length % c.HiddenSize != 0)
            throw new AgileQuantException($"Position embedding has {PositionEmbedding.Length} elements, not a multiple of the hidden size {c.HiddenSize}.");
        for (int i = 0; i < Layers.Count; i++)
        {
            LayerWeights l = Layers[i];
            foreach (LayerTensor role in LayerTensors.Linears)
            {
                if (!role.IsRequiredBy(c)) continue;
                LinearLayer linear = l.Linear(role) ?? throw new AgileQuantException($"Layer {i}: a {c.Mlp} MLP needs a {role.Describe()} projection.");
                (int rows, int cols) = role.Shape(c);
                CheckLinear($"layer {i} {role.Describe()}", linear, rows, cols);
                if (linear.HadamardInput && (role is not (LayerTensor.Output or LayerTensor.Down) || !AgileQuant.Intrinsics.Rotation.HadamardTransform.IsSupported(cols)))
                    throw new AgileQuantException($"Layer {i}: an online Hadamard input is run only before o_proj and down_proj, at a width of {AgileQuant.Intrinsics.Rotation.HadamardTransform.SupportedWidths}; found it on the {role.Describe()} of width {cols}.");
            }
            foreach (LayerTensor role in LayerTensors.Norms)
            {
                if (!role.IsRequiredBy(c)) continue;
                NormLayer norm = l.Norm(role) ?? throw new AgileQuantException($"Layer {i}: the configuration needs a {role.Describe()}, found none.");
                CheckLength($"layer {i} {role.Describe()}", norm.Weight.Length, role.NormWidth(c));
            }
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
