using System.Numerics.Tensors;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Rotation;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// QuaRot's rotation of an FP32 decoder (Ashkboos et al., arXiv 2404.00456, §3–4), offline, exact in real arithmetic:
/// the model computes the same function, but the activations the integer kernels round have their outlier channels
/// spread over all channels (docs/accuracy.md, "Rotation").
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Each RMSNorm's weight g is folded into the linears that read its output (W ← W·diag(g)) and the norm keeps
/// weight 1: the normalization of x then commutes with any orthogonal map of x, since ‖Qᵀx‖ = ‖x‖.</item>
/// <item>The residual stream x becomes Qᵀx with Qᵀ = D·H_d/√d (D seeded random signs): every embedding row and
/// every row of a matrix that reads the stream (Q, K, V, gate, up, LM head) is multiplied by Qᵀ (W ← W·Q); every
/// matrix that writes into it (o_proj, down_proj) and its bias by Qᵀ from the left (W ← Qᵀ·W).</item>
/// <item>Per head, V ← H_h·V and o_proj ← o_proj·H_hᵀ (h the head size), so the attention output o_proj reads
/// is rotated within each head; then o_proj's input gets the online transform of its full width (across the heads,
/// <see cref="LinearLayer.HadamardInput"/>) and its weight W ← W·Hᵀ.</item>
/// <item>down_proj's input gets the online transform H_f/√f (<see cref="LinearLayer.HadamardInput"/>) and its weight
/// W ← W·H_fᵀ: the SwiGLU product, the input with the largest outliers, is rotated before it is quantized.</item>
/// </list>
/// Refused, in one line naming the reason (<see cref="WhyNotRotatable"/>): LayerNorm (its mean subtraction and bias do not
/// commute with a rotation), post-LN, norms on the branch outputs (Gemma 2/3: their weights cannot be folded into
/// a writer), an embedding norm, project_in/out, learned positions, weights not held in FP32, and widths with no
/// known Hadamard matrix. Tied embeddings are untied: the embedding and the head are rotated as separate copies,
/// because the head also takes the final norm's weight.
/// </remarks>
public static class ModelRotation
{
    /// <summary>The seed of the random signs of Qᵀ the quantized configurations use.</summary>
    public const int DefaultSeed = 0;

    /// <summary>Why <paramref name="model"/> cannot be rotated, in one line, or null when it can.</summary>
    public static string? WhyNotRotatable(TransformerModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        TransformerWeights w = model.Weights;
        TransformerConfig c = w.Config;
        string prefix = $"Rotation is not valid for this {c.Family} model: ";
        if (c.Norm != NormKind.RmsNorm) return prefix + "it uses LayerNorm, whose mean subtraction and bias do not commute with a rotation of the residual stream (RMSNorm models only).";
        if (!c.PreNorm) return prefix + "its norms follow the residual add (post-LN), so the residual stream is not a rotated copy of the unrotated one.";
        if (c.PostNorms) return prefix + "its norms on the attention and MLP outputs (before the residual add) have weights that cannot be folded into a matrix writing the stream.";
        if (c.EmbeddingNorm || w.EmbeddingNorm is not null) return prefix + "it normalizes the embeddings with a LayerNorm.";
        if (w.ProjectIn is not null || w.ProjectOut is not null || c.EmbeddingWidth != c.HiddenSize) return prefix + "it projects the embeddings in and out (project_in/out).";
        if (w.PositionEmbedding is not null) return prefix + "it adds learned position embeddings to the residual stream.";
        foreach ((int width, string what) in new[] { (c.HiddenSize, "hidden size"), (c.IntermediateSize, "intermediate size"), (c.HeadDim, "head size"),
                     (c.NumHeads * c.HeadDim, "attention width") })
            if (!HadamardTransform.IsSupported(width))
                return prefix + $"its {what} {width} has no known Hadamard matrix ({HadamardTransform.SupportedWidths}).";
        if (w.LmHead.Weight is not Fp32Matrix) return prefix + $"its LM head is held as {w.LmHead.Weight.GetType().Name}; rotate the FP32 model before quantizing.";
        for (int i = 0; i < w.Layers.Count; i++)
        {
            LayerWeights l = w.Layers[i];
            foreach ((LayerTensor role, LinearLayer linear) in l.Linears)
            {
                if (linear.Weight is not Fp32Matrix) return prefix + $"layer {i}'s {role.Describe()} is held as {linear.Weight.GetType().Name}; rotate the FP32 model before quantizing.";
                if (linear.HadamardInput) return prefix + $"layer {i}'s {role.Describe()} already takes a rotated input: the model is rotated.";
            }
            if (l.AttentionNorm.Bias is not null || l.MlpNorm.Bias is not null) return prefix + $"layer {i}'s norms have a bias.";
        }
        if (w.FinalNorm?.Bias is not null) return prefix + "its final norm has a bias.";
        return null;
    }

    /// <summary>
    /// <paramref name="fp32"/> rotated (the steps above) with the random signs of <paramref name="seed"/>: new weights, the
    /// same kernel and runtime options; the logits equal the unrotated model's up to float rounding.
    /// </summary>
    /// <exception cref="AgileQuantException">The model cannot be rotated (<see cref="WhyNotRotatable"/> says why).</exception>
    public static TransformerModel Rotate(TransformerModel fp32, int seed = DefaultSeed) => Rotate(fp32, seed, onlineAttentionOutput: true);

    /// <summary>As <see cref="Rotate(TransformerModel, int)"/>; without <paramref name="onlineAttentionOutput"/>, o_proj's input is rotated only per head, offline (to measure what the online transform buys).</summary>
    internal static TransformerModel Rotate(TransformerModel fp32, int seed, bool onlineAttentionOutput)
    {
        ArgumentNullException.ThrowIfNull(fp32);
        if (WhyNotRotatable(fp32) is string why) throw new AgileQuantException(why);
        TransformerWeights w = fp32.Weights;
        TransformerConfig c = w.Config;
        var rotation = new ResidualRotation(c.HiddenSize, seed);

        float[] embedding = w.TokenEmbeddingAsFloats().ToArray(); // (VocabSize, HiddenSize), a copy: a tied head keeps the original
        rotation.RotateRows(embedding);

        var layers = new LayerWeights[w.Layers.Count];
        for (int i = 0; i < layers.Length; i++) layers[i] = RotateLayer(w.Layers[i], c, rotation, onlineAttentionOutput);

        float[] head = Reader(w.LmHead, w.FinalNorm?.Weight, rotation); // (VocabSize, HiddenSize)
        var weights = new TransformerWeights
        {
            Config = c,
            TokenEmbedding = embedding,
            Layers = layers,
            FinalNorm = w.FinalNorm is null ? null : UnitNorm(w.FinalNorm),
            LmHead = new LinearLayer(new Fp32Matrix(head, c.VocabSize, c.HiddenSize), w.LmHead.Bias),
        };
        return new TransformerModel(weights, fp32.Kernel, fp32.Options);
    }

    private static LayerWeights RotateLayer(LayerWeights l, TransformerConfig c, ResidualRotation rotation, bool onlineAttentionOutput)
    {
        int headDim = c.HeadDim, d = c.HiddenSize;
        float[] attentionGain = l.AttentionNorm.Weight, mlpGain = l.MlpNorm.Weight;

        // V (KvDim, d): rows read the stream; then each head's block of outputs ← H_h·block, for every input column
        float[] value = Reader(l.Value, attentionGain, rotation);
        float[] valueT = Transposed(value, l.Value.OutFeatures, d); // (d, KvDim)
        HadamardTransform.TransformRows(valueT, headDim);
        float[]? valueBias = l.Value.Bias?.ToArray();
        if (valueBias is not null) HadamardTransform.TransformRows(valueBias, headDim);

        // o_proj (d, NumHeads·HeadDim): writes the stream (columns ← Qᵀ·column), reads the per-head rotated attention output
        float[] output = Writer(l.Output, rotation, out float[]? outputBias);
        HadamardTransform.TransformRows(output, headDim);
        // and the online transform across the whole attention output (QuaRot's H across heads, here H of the full width)
        if (onlineAttentionOutput) HadamardTransform.TransformRows(output, l.Output.InFeatures);

        // down_proj (d, f): writes the stream, reads H_f·inner (online)
        float[] down = Writer(l.Down, rotation, out float[]? downBias);
        HadamardTransform.TransformRows(down, l.Down.InFeatures);

        return new LayerWeights
        {
            AttentionNorm = UnitNorm(l.AttentionNorm),
            Query = Linear(Reader(l.Query, attentionGain, rotation), l.Query, l.Query.Bias),
            Key = Linear(Reader(l.Key, attentionGain, rotation), l.Key, l.Key.Bias),
            Value = Linear(Transposed(valueT, d, l.Value.OutFeatures), l.Value, valueBias),
            QueryNorm = l.QueryNorm,
            KeyNorm = l.KeyNorm,
            Output = new LinearLayer(new Fp32Matrix(output, l.Output.OutFeatures, l.Output.InFeatures), outputBias) { HadamardInput = onlineAttentionOutput },
            MlpNorm = UnitNorm(l.MlpNorm),
            Gate = l.Gate is null ? null : Linear(Reader(l.Gate, mlpGain, rotation), l.Gate, l.Gate.Bias),
            Up = Linear(Reader(l.Up, mlpGain, rotation), l.Up, l.Up.Bias),
            Down = new LinearLayer(new Fp32Matrix(down, l.Down.OutFeatures, l.Down.InFeatures), downBias) { HadamardInput = true },
        };
    }

    private static LinearLayer Linear(float[] data, LinearLayer like, float[]? bias) => new(new Fp32Matrix(data, like.OutFeatures, like.InFeatures), bias);

    /// <summary>A matrix reading the (normed) stream: W·diag(gain)·Q, i.e. each row r ← Qᵀ·(gain ∘ r).</summary>
    private static float[] Reader(LinearLayer linear, float[]? gain, ResidualRotation rotation)
    {
        float[] data = ((Fp32Matrix)linear.Weight).Data.ToArray(); // (out, d)
        int d = linear.InFeatures;
        if (gain is not null)
            for (int r = 0; r < linear.OutFeatures; r++) TensorPrimitives.Multiply(data.AsSpan(r * d, d), gain, data.AsSpan(r * d, d));
        rotation.RotateRows(data);
        return data;
    }

    /// <summary>A matrix writing the stream: Qᵀ·W (each column ← Qᵀ·column) and its bias Qᵀ·b.</summary>
    private static float[] Writer(LinearLayer linear, ResidualRotation rotation, out float[]? bias)
    {
        int d = linear.OutFeatures, cols = linear.InFeatures;
        float[] columns = Transposed(((Fp32Matrix)linear.Weight).Data, d, cols); // (cols, d)
        rotation.RotateRows(columns);
        bias = linear.Bias?.ToArray();
        if (bias is not null) rotation.RotateRows(bias);
        return Transposed(columns, cols, d);
    }

    private static NormLayer UnitNorm(NormLayer norm)
    {
        var ones = new float[norm.Weight.Length];
        Array.Fill(ones, 1f);
        return new NormLayer(norm.Kind, ones, null, norm.Epsilon);
    }

    /// <summary>The transpose (cols, rows) of <paramref name="data"/> (rows, cols).</summary>
    private static float[] Transposed(float[] data, int rows, int cols)
    {
        var t = new float[data.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) t[c * rows + r] = data[r * cols + c];
        return t;
    }

    /// <summary>Qᵀ = D·H_d/√d: the normalized Hadamard transform, then seeded random signs.</summary>
    private sealed class ResidualRotation
    {
        private readonly float[] _signs; // (d): ±1
        private readonly int _width;

        public ResidualRotation(int width, int seed)
        {
            _width = width;
            _signs = new float[width];
            var random = new Random(seed);
            for (int i = 0; i < width; i++) _signs[i] = random.Next(2) == 0 ? 1f : -1f;
        }

        /// <summary>Each row of <paramref name="rows"/> (count, d) ← Qᵀ·row.</summary>
        public void RotateRows(Span<float> rows)
        {
            HadamardTransform.TransformRows(rows, _width);
            for (int start = 0; start < rows.Length; start += _width)
                TensorPrimitives.Multiply(rows.Slice(start, _width), _signs, rows.Slice(start, _width));
        }
    }
}
