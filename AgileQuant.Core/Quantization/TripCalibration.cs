using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Core.Quantization;

/// <summary>
/// Per-channel power-of-two factors α_c of one layer's four linear inputs (TRIP, docs/method.md §4); null where a point
/// has no foldable predecessor (factors of 1). The activation channel c is divided by α_c and the weight column c of
/// the linears reading it multiplied by α_c, so the FP32 function is unchanged.
/// </summary>
/// <param name="QueryKeyValue">Attention-norm output (HiddenSize): folded into the norm's weight (and bias) and Q/K/V columns.</param>
/// <param name="AttentionOutput">o_proj input per KV channel (KvDim): folded into V's rows (and bias) and o_proj columns of every head sharing it.</param>
/// <param name="MlpInput">MLP-norm output (HiddenSize): folded into the norm and the gate/up columns.</param>
/// <param name="MlpDown">down_proj input (IntermediateSize): folded into up's rows (SwiGLU, ReLU) and down's columns.</param>
public sealed record LayerChannelFactors(float[]? QueryKeyValue, float[]? AttentionOutput, float[]? MlpInput, float[]? MlpDown);

/// <summary>
/// TRIP calibration (docs/method.md §1, §4): one pass of calibration text through the FP32 model records each linear
/// input's per-channel min/max; outlier channels get power-of-two factors (FQ-ViT style) folded into the weights;
/// each input's static per-tensor scale is the min/max observer's scale of the folded activations.
/// </summary>
/// <remarks>
/// Outlier rule: with m_c = max |x_c| and the median m̃ over channels, a channel is an outlier when m_c &gt; T·m̃
/// (<see cref="OutlierMultiple"/>), and gets <c>α_c = 2^min(K, ceil(log2(m_c / (T·m̃))))</c>
/// (<see cref="MaxFactorExponent"/>), bringing it back to about T·m̃. Powers of two make the folding exact in floating point.
/// Folding needs a linear, positively homogeneous map before the input: pre-norm models fold Q/K/V and MLP inputs into
/// the norms; o_proj's input is linear in V; down_proj's input is <c>silu(gate)·up</c> or <c>relu(fc1)</c>, both
/// homogeneous in the up/fc1 row for α &gt; 0. GELU MLPs and post-norm models keep factors of 1 there.
/// </remarks>
public static class TripCalibration
{
    /// <summary>T: channels whose range exceeds T × the median channel range are outliers (2 measured best on stories260K against 1.5 and 4: docs/method.md §5).</summary>
    public const float OutlierMultiple = 2f;

    /// <summary>K: factors are at most 2^K.</summary>
    public const int MaxFactorExponent = 4;

    /// <summary>Per-channel min and max of every (layer, slot) input over <paramref name="calibration"/> run through <paramref name="model"/>.</summary>
    public static ChannelRangeObserver ObserveRanges(TransformerModel model, IReadOnlyList<int[]> calibration, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(calibration);
        if (calibration.Count == 0) throw new AgileQuantException("TRIP's static activation scales need calibration text.");
        var observer = new ChannelRangeObserver(model.Config.NumLayers);
        ModelQuantizer.RunCalibration(model, observer, calibration, cancel);
        return observer;
    }

    /// <summary>α_c for channel ranges <paramref name="maxMagnitude"/> (see the class remarks); 1 everywhere when nothing is an outlier.</summary>
    public static float[] PowerOfTwoFactors(ReadOnlySpan<float> maxMagnitude) => PowerOfTwoFactors(maxMagnitude, OutlierMultiple);

    /// <summary>α_c with outlier multiple <paramref name="outlierMultiple"/> in place of <see cref="OutlierMultiple"/>.</summary>
    public static float[] PowerOfTwoFactors(ReadOnlySpan<float> maxMagnitude, float outlierMultiple)
    {
        float[] factors = new float[maxMagnitude.Length];
        Array.Fill(factors, 1f);
        if (maxMagnitude.IsEmpty) return factors;
        float[] sorted = maxMagnitude.ToArray();
        Array.Sort(sorted);
        float threshold = outlierMultiple * sorted[sorted.Length / 2];
        if (!(threshold > 0)) return factors;
        for (int c = 0; c < factors.Length; c++)
            if (maxMagnitude[c] > threshold)
                factors[c] = MathF.ScaleB(1f, Math.Min(MaxFactorExponent, (int)Math.Ceiling(Math.Log2(maxMagnitude[c] / (double)threshold))));
        return factors;
    }

    /// <summary>The factors TRIP folds into each layer of <paramref name="config"/>'s architecture, from observed ranges.</summary>
    public static LayerChannelFactors[] ChooseFactors(TransformerConfig config, ChannelRangeObserver ranges) => ChooseFactors(config, ranges, OutlierMultiple);

    /// <summary>As <see cref="ChooseFactors(TransformerConfig, ChannelRangeObserver)"/> with outlier multiple <paramref name="outlierMultiple"/>.</summary>
    public static LayerChannelFactors[] ChooseFactors(TransformerConfig config, ChannelRangeObserver ranges, float outlierMultiple)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(ranges);
        var result = new LayerChannelFactors[config.NumLayers];
        int hd = config.HeadDim, groupHeads = config.NumHeads / config.NumKvHeads;
        bool foldDown = config.Mlp is MlpKind.SwiGlu or MlpKind.GeGlu or MlpKind.Relu; // down's input is linear (gated) or positively homogeneous in up's output
        for (int l = 0; l < config.NumLayers; l++)
        {
            // o_proj channel (h, d) reads V channel (h / groupHeads, d): one factor per KV channel, from its widest head
            float[] outRange = ranges.MaxMagnitude(l, LinearSlot.AttentionOutput);
            float[] kvRange = new float[config.KvDim];
            for (int h = 0; h < config.NumHeads; h++)
                for (int d = 0; d < hd; d++)
                    kvRange[h / groupHeads * hd + d] = Math.Max(kvRange[h / groupHeads * hd + d], outRange[h * hd + d]);
            result[l] = new LayerChannelFactors(
                config.PreNorm ? PowerOfTwoFactors(ranges.MaxMagnitude(l, LinearSlot.QueryKeyValue), outlierMultiple) : null,
                PowerOfTwoFactors(kvRange, outlierMultiple),
                config.PreNorm ? PowerOfTwoFactors(ranges.MaxMagnitude(l, LinearSlot.MlpInput), outlierMultiple) : null,
                foldDown ? PowerOfTwoFactors(ranges.MaxMagnitude(l, LinearSlot.MlpDown), outlierMultiple) : null);
        }
        return result;
    }

    /// <summary>The factor of each input channel of <paramref name="slot"/> (its width), 1 where none is folded.</summary>
    public static float[] InputFactors(TransformerConfig config, LayerChannelFactors factors, LinearSlot slot)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(factors);
        int width = slot switch
        {
            LinearSlot.QueryKeyValue or LinearSlot.MlpInput => config.HiddenSize,
            LinearSlot.AttentionOutput => config.NumHeads * config.HeadDim,
            _ => config.IntermediateSize,
        };
        float[]? perChannel = slot switch
        {
            LinearSlot.QueryKeyValue => factors.QueryKeyValue,
            LinearSlot.MlpInput => factors.MlpInput,
            LinearSlot.MlpDown => factors.MlpDown,
            _ => factors.AttentionOutput,
        };
        float[] result = new float[width];
        if (perChannel is null)
        {
            Array.Fill(result, 1f);
            return result;
        }
        if (slot != LinearSlot.AttentionOutput) return perChannel.ToArray();
        int hd = config.HeadDim, groupHeads = config.NumHeads / config.NumKvHeads;
        for (int h = 0; h < config.NumHeads; h++)
            for (int d = 0; d < hd; d++) result[h * hd + d] = perChannel[h / groupHeads * hd + d];
        return result;
    }

    /// <summary>
    /// <paramref name="fp32"/> with <paramref name="factors"/> folded in: the function it computes in FP32 is unchanged
    /// (exactly so for power-of-two factors), but the outlier channels of the linear inputs are divided by α_c.
    /// </summary>
    public static TransformerModel Fold(TransformerModel fp32, IReadOnlyList<LayerChannelFactors> factors)
    {
        ArgumentNullException.ThrowIfNull(fp32);
        ArgumentNullException.ThrowIfNull(factors);
        TransformerConfig c = fp32.Config;
        if (factors.Count != c.NumLayers) throw new ArgumentException($"Expected factors for {c.NumLayers} layers, found {factors.Count}.", nameof(factors));
        var layers = new LayerWeights[c.NumLayers];
        for (int l = 0; l < layers.Length; l++)
        {
            LayerWeights w = fp32.Weights.Layers[l];
            LayerChannelFactors f = factors[l];
            float[][] inputFactors = new float[ChannelRangeObserver.SlotCount][]; // by LinearSlot
            for (int s = 0; s < inputFactors.Length; s++) inputFactors[s] = InputFactors(c, f, (LinearSlot)s);
            // A norm's output is the next linears' input, so their factors divide it; V's and up's output rows carry the
            // factors of the input they feed (o_proj's, down_proj's).
            layers[l] = w.Map(
                (role, norm) => DivideNorm(norm, role switch
                {
                    LayerTensor.AttentionNorm => f.QueryKeyValue,
                    LayerTensor.MlpNorm => f.MlpInput,
                    // per-head q/k norms and post-norms read no factored channels: q, k and the block outputs are unchanged
                    LayerTensor.QueryNorm or LayerTensor.KeyNorm or LayerTensor.PostAttentionNorm or LayerTensor.PostMlpNorm => null,
                    _ => throw new AgileQuantException($"TRIP cannot fold factors into the {role.Describe()}."),
                }),
                (role, linear) =>
                {
                    LinearLayer scaled = MultiplyColumns(linear, inputFactors[(int)role.InputSlot()]);
                    return role switch
                    {
                        LayerTensor.Value => DivideRows(scaled, f.AttentionOutput),
                        LayerTensor.Up => DivideRows(scaled, f.MlpDown),
                        _ => scaled,
                    };
                });
        }
        TransformerWeights weights = ModelQuantizer.With(fp32.Weights, layers);
        return new TransformerModel(weights, fp32.Kernel, fp32.Options);
    }

    /// <summary>
    /// Static scales of every (layer, slot) input of the folded model: the min/max observer over the calibration
    /// ranges divided by the factors (max_c |x_c| / α_c), symmetric, <c>s₈ = R/127</c>, <c>s₄ = R/7</c>.
    /// </summary>
    public static StaticActivationScales[][] StaticScales(TransformerConfig config, ChannelRangeObserver ranges, IReadOnlyList<LayerChannelFactors> factors)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(ranges);
        ArgumentNullException.ThrowIfNull(factors);
        var result = new StaticActivationScales[config.NumLayers][];
        for (int l = 0; l < config.NumLayers; l++)
        {
            result[l] = new StaticActivationScales[ChannelRangeObserver.SlotCount];
            for (int s = 0; s < ChannelRangeObserver.SlotCount; s++)
            {
                var slot = (LinearSlot)s;
                float[] alpha = InputFactors(config, factors[l], slot);
                float[] min = ranges.Min(l, slot), max = ranges.Max(l, slot);
                // the folded activations' extremes: x_c / α_c, α_c > 0
                float[] folded = new float[2 * alpha.Length];
                for (int ch = 0; ch < alpha.Length; ch++)
                {
                    folded[2 * ch] = min[ch] / alpha[ch];
                    folded[2 * ch + 1] = max[ch] / alpha[ch];
                }
                var observer = new MinMaxObserver();
                observer.Observe(folded);
                result[l][s] = new StaticActivationScales(observer.GetParameters(8, symmetric: true).Scale, observer.GetParameters(4, symmetric: true).Scale);
            }
        }
        return result;
    }

    // norm output channel c ÷ α_c: w_c / α_c, b_c / α_c
    private static NormLayer DivideNorm(NormLayer norm, float[]? alpha)
    {
        if (alpha is null) return norm;
        float[] weight = norm.Weight.ToArray();
        float[]? bias = norm.Bias?.ToArray();
        for (int c = 0; c < weight.Length; c++)
        {
            weight[c] /= alpha[c];
            if (bias is not null) bias[c] /= alpha[c];
        }
        return new NormLayer(norm.Kind, weight, bias, norm.Epsilon);
    }

    // W[r, c] · α_c
    private static LinearLayer MultiplyColumns(LinearLayer linear, float[] alpha)
    {
        if (alpha.All(a => a == 1f)) return linear;
        Fp32Matrix w = RequireFp32(linear);
        float[] data = w.Data.ToArray();
        for (int r = 0; r < w.Rows; r++)
            for (int c = 0; c < w.Cols; c++) data[(long)r * w.Cols + c] *= alpha[c];
        return new LinearLayer(new Fp32Matrix(data, w.Rows, w.Cols), linear.Bias);
    }

    // output row r ÷ α_r: W[r, ·] / α_r, b_r / α_r
    private static LinearLayer DivideRows(LinearLayer linear, float[]? alpha)
    {
        if (alpha is null || alpha.All(a => a == 1f)) return linear;
        Fp32Matrix w = RequireFp32(linear);
        float[] data = w.Data.ToArray();
        float[]? bias = linear.Bias?.ToArray();
        for (int r = 0; r < w.Rows; r++)
        {
            for (int c = 0; c < w.Cols; c++) data[(long)r * w.Cols + c] /= alpha[r];
            if (bias is not null) bias[r] /= alpha[r];
        }
        return new LinearLayer(new Fp32Matrix(data, w.Rows, w.Cols), bias);
    }

    private static Fp32Matrix RequireFp32(LinearLayer linear) => linear.Weight as Fp32Matrix
        ?? throw new AgileQuantException($"TRIP folds factors into FP32 weights only, found {linear.Weight.GetType().Name}.");
}

/// <summary>Records the per-channel min and max of every decoder linear input (layer, <see cref="LinearSlot"/>) it observes.</summary>
public sealed class ChannelRangeObserver : ILinearInputObserver
{
    /// <summary>Number of <see cref="LinearSlot"/> values.</summary>
    public const int SlotCount = 4;

    private readonly float[]?[] _min; // (layers · SlotCount) → (width)
    private readonly float[]?[] _max;

    /// <summary>Creates an empty observer for <paramref name="layers"/> layers.</summary>
    public ChannelRangeObserver(int layers)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        _min = new float[layers * SlotCount][];
        _max = new float[layers * SlotCount][];
    }

    /// <inheritdoc />
    public void Observe(int layer, LinearSlot slot, ReadOnlySpan<float> input, int tokens)
    {
        if (tokens <= 0) return;
        int width = input.Length / tokens, at = layer * SlotCount + (int)slot;
        NonFiniteValueException.ThrowIfAny(input[..(tokens * width)], width, nameof(input));
        float[] min = _min[at] ??= Filled(width, float.PositiveInfinity);
        float[] max = _max[at] ??= Filled(width, float.NegativeInfinity);
        for (int t = 0; t < tokens; t++)
        {
            ReadOnlySpan<float> row = input.Slice(t * width, width);
            System.Numerics.Tensors.TensorPrimitives.Min(row, min, min);
            System.Numerics.Tensors.TensorPrimitives.Max(row, max, max);
        }
    }

    /// <summary>Per-channel minimum of (layer, slot).</summary>
    public float[] Min(int layer, LinearSlot slot) => _min[layer * SlotCount + (int)slot] ?? throw Unobserved(layer, slot);

    /// <summary>Per-channel maximum of (layer, slot).</summary>
    public float[] Max(int layer, LinearSlot slot) => _max[layer * SlotCount + (int)slot] ?? throw Unobserved(layer, slot);

    /// <summary>Per-channel max |x| of (layer, slot).</summary>
    public float[] MaxMagnitude(int layer, LinearSlot slot)
    {
        float[] min = Min(layer, slot), max = Max(layer, slot), result = new float[min.Length];
        for (int c = 0; c < result.Length; c++) result[c] = Math.Max(-min[c], max[c]);
        return result;
    }

    private static float[] Filled(int width, float value)
    {
        float[] a = new float[width];
        Array.Fill(a, value);
        return a;
    }

    private static AgileQuantException Unobserved(int layer, LinearSlot slot) =>
        new($"No calibration input was observed at layer {layer}, {slot}.");
}
