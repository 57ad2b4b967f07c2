using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Models.Architectures;

/// <summary>The tensors of one file by name, each taken with the shape the config implies; one implementation per format.</summary>
internal interface ITensorSource
{
    /// <summary>The file (or checkpoint directory) the tensors come from, as errors name it.</summary>
    string SourcePath { get; }

    /// <summary>Whether the file holds <paramref name="name"/>.</summary>
    bool Has(string name);

    /// <summary>A (rows, cols) weight matrix, in the runtime format the stored type maps to.</summary>
    IWeightMatrix Matrix(string name, int rows, int cols);

    /// <summary>A (rows, cols) tensor in FP32 (embedding tables; fused tensors before they are split).</summary>
    float[] Table(string name, int rows, int cols);

    /// <summary>A (length) tensor in FP32 (norm weights, biases).</summary>
    float[] Vector(string name, int length);

    /// <summary>
    /// The token-embedding table <paramref name="name"/> (rows, cols) in the compact form the format stores it in, rows
    /// dequantized on lookup; null when the format (or this tensor's type) gives it in FP32 through <see cref="Table"/>.
    /// </summary>
    IEmbeddingRows? StoredTable(string name, int rows, int cols) => null;

    /// <summary>
    /// The LM head that multiplies by the token embedding <paramref name="embedding"/> (stored as <paramref name="embeddingName"/>;
    /// null when <see cref="StoredTable"/> kept it in its stored form).
    /// </summary>
    IWeightMatrix TiedHead(string embeddingName, float[]? embedding, int rows, int cols);

    /// <summary>Throws naming the first tensor of the file that nothing took.</summary>
    void RequireAllTaken();
}

/// <summary>
/// Reads <see cref="TransformerWeights"/> out of any format: which tensors a model of a given config has follows from the
/// config and the family's <see cref="ArchitectureDescription"/> (biases, head tying), their names from the format's
/// <see cref="TensorNameMap"/>, and the bytes from an <see cref="ITensorSource"/>. Every tensor the model needs must be
/// there with its exact shape, and no other may be.
/// </summary>
internal static class DecoderWeightsReader
{
    private const string Weight = ".weight", Bias = ".bias";

    /// <summary>Reads a model of <paramref name="config"/> named by <paramref name="names"/> from <paramref name="source"/>.</summary>
    /// <param name="family">The family (biases, head tying).</param>
    /// <param name="config">The configuration, which says which tensors exist and their shapes.</param>
    /// <param name="names">The format's names.</param>
    /// <param name="basePrefix">Prefix of every name but the LM head (Hugging Face's base-model prefix); empty otherwise.</param>
    /// <param name="source">The file.</param>
    /// <param name="normWeightOffset">Added to every norm weight (Gemma's Hugging Face <c>(1 + w)</c> norms: <see cref="ArchitectureDescription.HfNormWeightOffset"/>); 0 otherwise.</param>
    public static TransformerWeights Read(ArchitectureDescription family, TransformerConfig config, TensorNameMap names, string basePrefix, ITensorSource source,
        float normWeightOffset = 0f)
    {
        TransformerConfig c = config;
        int d = c.HiddenSize, e = c.EmbeddingWidth, v = c.VocabSize;
        string Global(ModelTensor tensor) =>
            (tensor == ModelTensor.LmHead ? "" : basePrefix) + (names.Global(tensor) ?? throw NotNamed(family, tensor.ToString()));
        string StoredName(int layer, LayerTensor role) =>
            basePrefix + (names.Layer(layer, role) ?? (names.FusedWith(role) is { } fused ? names.InLayer(layer, fused.Name) : throw NotNamed(family, role.ToString())));
        NormLayer Norm(string name, int width)
        {
            float[] weight = source.Vector(name + Weight, width);
            if (normWeightOffset != 0) System.Numerics.Tensors.TensorPrimitives.Add(weight, normWeightOffset, weight); // 1 + w, in FP32
            return new(c.Norm, weight, c.Norm == NormKind.LayerNorm ? source.Vector(name + Bias, width) : null, c.NormEpsilon);
        }

        // Optional biases are all there or all absent, as the first one in layer 0 says.
        LayerTensor[] optional = LayerTensors.Linears.Where(r => r.IsRequiredBy(c) && family.Bias(r) == BiasRule.Optional).ToArray();
        bool optionalBiases = optional.Length > 0 && source.Has(StoredName(0, optional[0]) + Bias);
        bool HasBias(LayerTensor role) => family.Bias(role) switch
        {
            BiasRule.Always => true,
            BiasRule.Optional => optionalBiases,
            _ => false,
        };

        var layers = new LayerWeights[c.NumLayers];
        var split = new Dictionary<LayerTensor, LinearLayer>();
        for (int i = 0; i < layers.Length; i++)
        {
            split.Clear();
            layers[i] = LayerWeights.FromParts(role => role.IsRequiredBy(c) ? Norm(StoredName(i, role), role.NormWidth(c)) : null, role =>
            {
                if (!role.IsRequiredBy(c)) return null;
                if (names.FusedWith(role) is not { } fused)
                {
                    string name = StoredName(i, role);
                    (int rows, int cols) = role.Shape(c);
                    return new LinearLayer(source.Matrix(name + Weight, rows, cols), HasBias(role) ? source.Vector(name + Bias, rows) : null);
                }
                if (!split.ContainsKey(role)) ReadFused(source, StoredName(i, role), fused, c, HasBias(fused.Parts[0]), split);
                return split[role];
            });
        }

        string embeddingName = Global(ModelTensor.TokenEmbedding) + Weight;
        IEmbeddingRows? storedEmbedding = source.StoredTable(embeddingName, v, e);
        float[]? embedding = storedEmbedding is null ? source.Table(embeddingName, v, e) : null;
        float[]? positions = c.Positions == PositionKind.Learned
            ? source.Table(Global(ModelTensor.PositionEmbedding) + Weight, c.MaxSequenceLength + c.LearnedPositionOffset, d)
            : null;
        NormLayer? embeddingNorm = c.EmbeddingNorm ? Norm(Global(ModelTensor.EmbeddingNorm), d) : null;
        bool projected = e != d;
        LinearLayer? projectIn = projected ? new LinearLayer(source.Matrix(Global(ModelTensor.ProjectIn) + Weight, d, e)) : null;
        NormLayer? finalNorm = c.FinalNorm ? Norm(Global(ModelTensor.FinalNorm), d) : null;
        LinearLayer? projectOut = projected ? new LinearLayer(source.Matrix(Global(ModelTensor.ProjectOut) + Weight, e, d)) : null;
        string headName = Global(ModelTensor.LmHead) + Weight;
        IWeightMatrix head;
        if (family.Head == HeadTying.TiedWhenAbsent && source.Has(headName)) head = source.Matrix(headName, v, e);
        else
        {
            if (source.Has(headName)) source.Table(headName, v, e); // a stored copy of the tied head: shape-checked, then dropped
            head = source.TiedHead(embeddingName, embedding, v, e);
        }
        if (names.Global(ModelTensor.RotaryFrequencies) is { } frequencies && source.Has(basePrefix + frequencies + Weight))
            CheckRotaryFrequencies(source, basePrefix + frequencies + Weight, c);
        source.RequireAllTaken();
        return new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            StoredTokenEmbedding = storedEmbedding,
            PositionEmbedding = positions,
            EmbeddingNorm = embeddingNorm,
            ProjectIn = projectIn,
            Layers = layers,
            FinalNorm = finalNorm,
            ProjectOut = projectOut,
            LmHead = new LinearLayer(head),
        };
    }

    // Reads the fused tensor `name` in FP32 and splits its rows (and bias) into the linears it holds.
    private static void ReadFused(ITensorSource source, string name, FusedTensor fused, TransformerConfig c, bool bias, Dictionary<LayerTensor, LinearLayer> into)
    {
        Span<int> partRows = stackalloc int[fused.Parts.Count];
        int cols = fused.Parts[0].Shape(c).Cols, rows = 0;
        for (int p = 0; p < partRows.Length; p++) rows += partRows[p] = fused.Parts[p].Shape(c).Rows;
        float[] weight = source.Table(name + Weight, rows, cols); // (rows, cols)
        float[]? fusedBias = bias ? source.Vector(name + Bias, rows) : null; // (rows)
        var parts = new float[partRows.Length][];
        var partBiases = new float[partRows.Length][];
        for (int p = 0; p < parts.Length; p++)
        {
            parts[p] = new float[(long)partRows[p] * cols];
            partBiases[p] = new float[partRows[p]];
        }
        for (int r = 0; r < rows; r++)
        {
            (int part, int row) = fused.Locate(r, partRows, c.HeadDim);
            weight.AsSpan(r * cols, cols).CopyTo(parts[part].AsSpan(row * cols, cols));
            if (fusedBias is not null) partBiases[part][row] = fusedBias[r];
        }
        for (int p = 0; p < parts.Length; p++)
            into[fused.Parts[p]] = new LinearLayer(new Fp32Matrix(parts[p], partRows[p], cols), fusedBias is null ? null : partBiases[p]);
    }

    // A stored rope_freqs must hold the configuration's frequency factors, bit for bit (the runtime rotates by the config's).
    private static void CheckRotaryFrequencies(ITensorSource source, string name, TransformerConfig c)
    {
        float[] stored = source.Vector(name, c.HeadDim / 2);
        if (c.RotaryFrequencyFactors is not { } factors)
            throw new ModelFormatException(source.SourcePath, name, "expected no RoPE frequency factors (the configuration has no RoPE scaling that uses them), found this tensor");
        for (int i = 0; i < stored.Length; i++)
            if (BitConverter.SingleToInt32Bits(stored[i]) != BitConverter.SingleToInt32Bits(factors.Factors[i]))
                throw new ModelFormatException(source.SourcePath, name,
                    $"expected the configuration's RoPE frequency factors, found {stored[i]} at element {i} where the configuration has {factors.Factors[i]}");
    }

    private static InvalidOperationException NotNamed(ArchitectureDescription family, string tensor) =>
        new($"The '{family.Family}' description gives no name for the {tensor} tensor that the configuration calls for.");
}
