using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Encoder;

/// <summary>
/// Sizes of a BERT-family encoder: learned absolute positions, token-type embeddings, an embedding LayerNorm,
/// post-LN layers (<c>x = LN(x + attn(x))</c>, <c>x = LN(x + fc2(gelu_erf(fc1(x))))</c>), bidirectional attention, biases everywhere.
/// </summary>
public sealed record EncoderConfig
{
    /// <summary>Vocabulary size (rows of the token embedding).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Hidden width d.</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Number of layers.</summary>
    public required int NumLayers { get; init; }

    /// <summary>Attention heads; d must divide evenly.</summary>
    public required int NumHeads { get; init; }

    /// <summary>MLP inner width.</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Rows of the learned position table: the longest input.</summary>
    public required int MaxPositions { get; init; }

    /// <summary>Rows of the token-type table (segment ids).</summary>
    public int TokenTypes { get; init; } = 2;

    /// <summary>LayerNorm epsilon (BERT: 1e-12).</summary>
    public float LayerNormEpsilon { get; init; } = 1e-12f;

    /// <summary>Width of one head: d / heads.</summary>
    public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Checks the sizes; throws <see cref="AgileQuantException"/> naming the first bad one.</summary>
    public void Validate()
    {
        if (VocabSize < 1 || HiddenSize < 1 || NumLayers < 1 || NumHeads < 1 || IntermediateSize < 1 || MaxPositions < 1 || TokenTypes < 1)
            throw new AgileQuantException($"Encoder sizes must be positive, found vocab {VocabSize}, hidden {HiddenSize}, layers {NumLayers}, heads {NumHeads}, intermediate {IntermediateSize}, positions {MaxPositions}, token types {TokenTypes}.");
        if (HiddenSize % NumHeads != 0)
            throw new AgileQuantException($"Hidden size {HiddenSize} is not a multiple of the {NumHeads} heads.");
        if (!(LayerNormEpsilon >= 0) || !float.IsFinite(LayerNormEpsilon))
            throw new AgileQuantException($"LayerNorm epsilon must be finite and non-negative, found {LayerNormEpsilon}.");
    }
}

/// <summary>
/// All weights of a BERT-family encoder. Each layer reuses the decoder's <see cref="LayerWeights"/>: Query/Key/Value/Output
/// are the self-attention projections, <see cref="LayerWeights.AttentionNorm"/> the post-attention LayerNorm, Up/Down the
/// MLP (intermediate.dense, output.dense) and <see cref="LayerWeights.MlpNorm"/> the output LayerNorm; Gate is unused.
/// Immutable and shareable once built.
/// </summary>
public sealed class EncoderWeights
{
    /// <summary>The sizes.</summary>
    public required EncoderConfig Config { get; init; }

    /// <summary>Token embedding (VocabSize, HiddenSize).</summary>
    public required float[] TokenEmbedding { get; init; }

    /// <summary>Learned absolute positions (MaxPositions, HiddenSize).</summary>
    public required float[] PositionEmbedding { get; init; }

    /// <summary>Token-type (segment) embedding (TokenTypes, HiddenSize); single sentences use row 0.</summary>
    public required float[] TokenTypeEmbedding { get; init; }

    /// <summary>LayerNorm over the summed embeddings.</summary>
    public required NormLayer EmbeddingNorm { get; init; }

    /// <summary>The layers, first to last.</summary>
    public required IReadOnlyList<LayerWeights> Layers { get; init; }

    /// <summary>
    /// Per layer, optional per-channel input scales (SmoothQuant-style, <see cref="EncoderSmoothing"/>): each linear input x
    /// is multiplied by these factors 1/s before the linear, whose weight columns were multiplied by s; null for none.
    /// </summary>
    public IReadOnlyList<LayerInputScales>? InputScales { get; init; }

    /// <summary>Bytes of the layer weights as the kernels stream them, plus the FP32 embedding tables.</summary>
    public long WeightBytes
    {
        get
        {
            long bytes = ((long)TokenEmbedding.Length + PositionEmbedding.Length + TokenTypeEmbedding.Length) * sizeof(float);
            foreach (LayerWeights l in Layers)
                foreach ((_, LinearLayer linear) in l.Linears) bytes += linear.Weight.ByteCount;
            return bytes;
        }
    }

    /// <summary>Checks every tensor's shape against <see cref="Config"/>; throws <see cref="AgileQuantException"/> naming the first mismatch.</summary>
    public void Validate()
    {
        EncoderConfig c = Config;
        c.Validate();
        int d = c.HiddenSize;
        CheckLength("token embedding", TokenEmbedding.Length, (long)c.VocabSize * d);
        CheckLength("position embedding", PositionEmbedding.Length, (long)c.MaxPositions * d);
        CheckLength("token-type embedding", TokenTypeEmbedding.Length, (long)c.TokenTypes * d);
        CheckLength("embedding LayerNorm", EmbeddingNorm.Weight.Length, d);
        if (Layers.Count != c.NumLayers) throw new AgileQuantException($"Expected {c.NumLayers} layers, found {Layers.Count}.");
        for (int i = 0; i < Layers.Count; i++)
        {
            LayerWeights l = Layers[i];
            CheckLinear($"layer {i} query", l.Query, d, d);
            CheckLinear($"layer {i} key", l.Key, d, d);
            CheckLinear($"layer {i} value", l.Value, d, d);
            CheckLinear($"layer {i} attention output", l.Output, d, d);
            CheckLinear($"layer {i} intermediate", l.Up, c.IntermediateSize, d);
            CheckLinear($"layer {i} output", l.Down, d, c.IntermediateSize);
            CheckLength($"layer {i} attention LayerNorm", l.AttentionNorm.Weight.Length, d);
            CheckLength($"layer {i} output LayerNorm", l.MlpNorm.Weight.Length, d);
            if (l.Gate is not null) throw new AgileQuantException($"Layer {i}: an encoder MLP has no gate projection.");
            if (InputScales is null) continue;
            if (InputScales.Count != c.NumLayers) throw new AgileQuantException($"Expected input scales for {c.NumLayers} layers, found {InputScales.Count}.");
            LayerInputScales scales = InputScales[i];
            CheckLength($"layer {i} Q/K/V input scales", scales.QueryKeyValue.Length, d);
            CheckLength($"layer {i} attention output input scales", scales.AttentionOutput.Length, d);
            CheckLength($"layer {i} MLP input scales", scales.MlpInput.Length, d);
            CheckLength($"layer {i} MLP down input scales", scales.MlpDown.Length, c.IntermediateSize);
        }
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

/// <summary>Factors 1/s that multiply each linear input of one layer, per channel (see <see cref="EncoderWeights.InputScales"/>).</summary>
/// <param name="QueryKeyValue">(HiddenSize) for the input shared by Q, K and V.</param>
/// <param name="AttentionOutput">(HiddenSize) for the attention output projection's input.</param>
/// <param name="MlpInput">(HiddenSize) for fc1's input.</param>
/// <param name="MlpDown">(IntermediateSize) for fc2's input.</param>
public sealed record LayerInputScales(float[] QueryKeyValue, float[] AttentionOutput, float[] MlpInput, float[] MlpDown)
{
    /// <summary>The factors for <paramref name="slot"/>.</summary>
    public float[] For(LinearSlot slot) => slot switch
    {
        LinearSlot.QueryKeyValue => QueryKeyValue,
        LinearSlot.AttentionOutput => AttentionOutput,
        LinearSlot.MlpInput => MlpInput,
        _ => MlpDown,
    };
}
