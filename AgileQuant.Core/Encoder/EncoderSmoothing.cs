using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Core.Encoder;

/// <summary>
/// SmoothQuant-style migration of activation outliers into the weights (Xiao et al. 2022, arXiv 2211.10438, eq. 4): per
/// input channel c of each linear, <c>s_c = max|X_c|^α / max|W_:,c|^(1−α)</c>; the input is multiplied by 1/s at run time
/// and the weight columns by s, so the FP32 product is unchanged while per-token activation scales no longer spend their
/// range on outlier channels. In a post-LN encoder the LayerNorm outputs are also the residual stream, so the factors
/// cannot be folded into the LayerNorm and are applied per token instead (<see cref="EncoderWeights.InputScales"/>).
/// </summary>
public static class EncoderSmoothing
{
    /// <summary>An FP32 model equal to <paramref name="fp32"/> up to rounding, with smoothed inputs, from the input maxima of <paramref name="calibration"/>.</summary>
    /// <param name="fp32">A model with FP32 weights and no smoothing yet.</param>
    /// <param name="calibration">Token sequences ([CLS] … [SEP]) whose activations set max|X_c|.</param>
    /// <param name="alpha">Migration strength α in (0, 1); SmoothQuant's default is 0.5.</param>
    /// <exception cref="AgileQuantException">The model is not FP32 or already smoothed, or no calibration is given.</exception>
    public static EncoderModel Smooth(EncoderModel fp32, IReadOnlyList<int[]> calibration, double alpha = 0.5)
    {
        ArgumentNullException.ThrowIfNull(fp32);
        ArgumentNullException.ThrowIfNull(calibration);
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be in (0, 1).");
        if (calibration.Count == 0) throw new AgileQuantException("Smoothing needs calibration sequences.");
        if (fp32.Weights.InputScales is not null) throw new AgileQuantException("The model is already smoothed.");
        var maxima = new ActivationChannelMaxima();
        EncoderContext context = new EncoderModel(fp32.Weights, fp32.Kernel).CreateContext();
        context.Observer = maxima;
        foreach (int[] sequence in calibration)
            if (sequence.Length > 0) context.Encode(sequence.AsSpan(0, Math.Min(sequence.Length, fp32.Config.MaxPositions)));

        EncoderWeights w = fp32.Weights;
        var layers = new LayerWeights[w.Layers.Count];
        var scales = new LayerInputScales[w.Layers.Count];
        for (int l = 0; l < layers.Length; l++)
        {
            LayerWeights src = w.Layers[l];
            float[] sQkv = Factors(maxima.Maxima[(l, LinearSlot.QueryKeyValue)], alpha, src.Query, src.Key, src.Value);
            float[] sOut = Factors(maxima.Maxima[(l, LinearSlot.AttentionOutput)], alpha, src.Output);
            float[] sUp = Factors(maxima.Maxima[(l, LinearSlot.MlpInput)], alpha, src.Up);
            float[] sDown = Factors(maxima.Maxima[(l, LinearSlot.MlpDown)], alpha, src.Down);
            layers[l] = new LayerWeights
            {
                AttentionNorm = src.AttentionNorm,
                MlpNorm = src.MlpNorm,
                Query = ScaleColumns(src.Query, sQkv),
                Key = ScaleColumns(src.Key, sQkv),
                Value = ScaleColumns(src.Value, sQkv),
                Output = ScaleColumns(src.Output, sOut),
                Up = ScaleColumns(src.Up, sUp),
                Down = ScaleColumns(src.Down, sDown),
            };
            scales[l] = new LayerInputScales(Inverse(sQkv), Inverse(sOut), Inverse(sUp), Inverse(sDown));
        }
        var smoothed = new EncoderWeights
        {
            Config = w.Config,
            TokenEmbedding = w.TokenEmbedding,
            PositionEmbedding = w.PositionEmbedding,
            TokenTypeEmbedding = w.TokenTypeEmbedding,
            EmbeddingNorm = w.EmbeddingNorm,
            Layers = layers,
            InputScales = scales,
        };
        return new EncoderModel(smoothed, fp32.Kernel, fp32.Options, fp32.Scoring, fp32.ScoringSeed);
    }

    // s_c = max|X_c|^α / max_r|W[r, c]|^(1−α) over every linear sharing the input; 1 where a side is zero
    private static float[] Factors(float[] inputMax, double alpha, params LinearLayer[] linears)
    {
        int cols = inputMax.Length;
        var weightMax = new float[cols];
        foreach (LinearLayer linear in linears)
        {
            float[] data = AsFp32(linear).Data;
            for (int r = 0; r < linear.OutFeatures; r++)
                for (int c = 0; c < cols; c++) weightMax[c] = MathF.Max(weightMax[c], MathF.Abs(data[r * cols + c]));
        }
        var s = new float[cols];
        for (int c = 0; c < cols; c++)
        {
            double value = inputMax[c] > 0 && weightMax[c] > 0 ? Math.Pow(inputMax[c], alpha) / Math.Pow(weightMax[c], 1 - alpha) : 1;
            s[c] = (float)Math.Clamp(value, 1e-5, 1e5);
        }
        return s;
    }

    private static LinearLayer ScaleColumns(LinearLayer linear, float[] s)
    {
        float[] data = (float[])AsFp32(linear).Data.Clone(); // (out, in)
        int cols = linear.InFeatures;
        for (int r = 0; r < linear.OutFeatures; r++)
            System.Numerics.Tensors.TensorPrimitives.Multiply(data.AsSpan(r * cols, cols), s, data.AsSpan(r * cols, cols));
        return new LinearLayer(new Fp32Matrix(data, linear.OutFeatures, cols), linear.Bias);
    }

    private static Fp32Matrix AsFp32(LinearLayer linear) =>
        linear.Weight as Fp32Matrix ?? throw new AgileQuantException($"Smoothing needs FP32 weights, found {linear.Weight.GetType().Name}.");

    private static float[] Inverse(float[] s) => s.Select(v => 1f / v).ToArray();
}
