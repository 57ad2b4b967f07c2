using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Intrinsics.Trip;

namespace AgileQuant.Core.Quantization;

/// <summary>Options of <see cref="ModelQuantizer.Quantize"/>.</summary>
public sealed record ModelQuantizationOptions
{
    /// <summary>Weight group size overriding the configuration's (4-bit weights; 0 keeps the configuration's).</summary>
    public int GroupSize { get; init; }

    /// <summary>Calibration sequences (token ids, each starting with BOS) for GPTQ's Hessians. Required for GPTQ.</summary>
    public IReadOnlyList<int[]> Calibration { get; init; } = [];

    /// <summary>Receives a line per step of long work (per layer).</summary>
    public IProgress<string>? Progress { get; init; }

    /// <summary>Lets the caller stop between layers.</summary>
    public CancellationToken CancellationToken { get; init; }
}

/// <summary>
/// Turns an FP32 <see cref="TransformerModel"/> into one of the named quantized configurations: every
/// decoder linear's weight rounded by RTN or GPTQ and stored in the kernels' packed formats (8-bit per-row
/// <see cref="Int8RowMatrix"/>, 4-bit grouped <see cref="PackedInt4Matrix"/>), activations quantized per token
/// by the integer kernels, attention quantization and mixed-precision tokens set in <see cref="RuntimeOptions"/>.
/// The embeddings and the LM head stay FP32, as in GPTQ and the paper.
/// </summary>
/// <remarks>
/// W8A16/W4A16 keep activations in floating point: their weights are rounded to the codes, then stored
/// dequantized as FP32 (the arithmetic of a float-activation kernel on those codes), and
/// <see cref="QuantizedWeightBytes"/> reports the packed size they would stream.
/// GPTQ calibrates sequentially: layer l's Hessians come from running the calibration text through the
/// model whose layers 0..l−1 are already quantized (activations included), so later layers see the errors
/// of earlier ones.
/// </remarks>
public static class ModelQuantizer
{
    /// <summary>Quantizes <paramref name="fp32"/> to <paramref name="config"/>.</summary>
    /// <exception cref="AgileQuantException">GPTQ without calibration data, or an unsupported bit width.</exception>
    public static TransformerModel Quantize(TransformerModel fp32, QuantizationConfig config, ModelQuantizationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(fp32);
        ArgumentNullException.ThrowIfNull(config);
        options ??= new ModelQuantizationOptions();
        if (!config.QuantizesWeights && !config.QuantizesActivations) return fp32;
        RequireCalibrationAndKernelFormat(config, options, "calibration sequences (ModelQuantizationOptions.Calibration)");
        if (config.StaticActivationScales && !(config.QuantizesWeights && config.QuantizesActivations))
            throw new AgileQuantException($"{config.Name}: TRIP's static scales need integer weights and activations.");
        if (config.Rotate)
        {
            if (config.StaticActivationScales) throw new AgileQuantException($"{config.Name}: rotation and TRIP's static scales are not combined.");
            // the weights are rounded, and GPTQ's Hessians collected, in the rotated basis (QuaRot, arXiv 2404.00456, §4)
            fp32 = ModelRotation.Rotate(fp32, ModelRotation.DefaultSeed);
            options.Progress?.Report($"rotated the model ({config.Name})");
        }
        else if (config.StaticActivationScales && fp32.Weights.Layers.Any(l => l.Linears.Any(e => e.Linear.HadamardInput)))
            throw new AgileQuantException($"{config.Name}: TRIP's calibration does not keep a rotated model's online Hadamard transform.");
        StaticActivationScales[][]? staticScales = null;
        if (config.StaticActivationScales)
        {
            if (options.Calibration.Count == 0)
                throw new AgileQuantException($"{config.Name} uses TRIP, whose static activation scales need calibration sequences (ModelQuantizationOptions.Calibration).");
            // one FP32 pass: per-channel ranges → outlier factors folded into the FP32 weights → per-tensor scales of the folded inputs
            ChannelRangeObserver ranges = TripCalibration.ObserveRanges(fp32, options.Calibration, options.CancellationToken);
            LayerChannelFactors[] factors = TripCalibration.ChooseFactors(fp32.Config, ranges, config.TripOutlierMultiple);
            fp32 = TripCalibration.Fold(fp32, factors);
            staticScales = TripCalibration.StaticScales(fp32.Config, ranges, factors);
            options.Progress?.Report($"TRIP: calibrated static scales and folded outlier-channel factors ({config.Name})");
        }
        // the scheme decides the runtime beyond the weights; how contexts store keys and values and how long they are stay as chosen for the model
        RuntimeOptions runtime = RuntimeOptionsFor(fp32, config) with { KvCache = fp32.Options.KvCache, ContextLength = fp32.Options.ContextLength };
        TransformerWeights source = fp32.Weights;
        var layers = source.Layers.ToArray();
        for (int l = 0; l < layers.Length; l++)
        {
            options.CancellationToken.ThrowIfCancellationRequested();
            Dictionary<LinearSlot, Quantization.HessianAccumulator>? hessians = null;
            if (config.Rounding == WeightRounding.Gptq)
            {
                // Layers before l are already quantized in `layers`; l and later are still FP32.
                var partial = new TransformerModel(With(source, layers), fp32.Kernel, runtime);
                hessians = CollectHessians(partial, l, options.Calibration, options.CancellationToken);
            }
            layers[l] = QuantizeLayer(source.Layers[l], config, options.GroupSize, hessians, staticScales?[l]);
            options.Progress?.Report($"quantized layer {l + 1}/{layers.Length} ({config.Name})");
        }
        return new TransformerModel(With(source, layers), fp32.Kernel, runtime);
    }

    /// <summary>Bytes the decoder linears of <paramref name="model"/> would stream per token in <paramref name="config"/>'s packed formats, plus the token embedding table as held and the head.</summary>
    public static long QuantizedWeightBytes(TransformerModel model, QuantizationConfig config, int groupSize = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        TransformerWeights w = model.Weights;
        long bytes = w.TokenEmbeddingBytes + w.LmHead.Weight.ByteCount;
        int g = groupSize > 0 ? groupSize : config.WeightGroupSize;
        foreach (LayerWeights l in w.Layers)
            foreach ((_, LinearLayer linear) in l.Linears)
            {
                long rows = linear.OutFeatures, cols = linear.InFeatures;
                bytes += !config.QuantizesWeights ? rows * cols * sizeof(float)
                    : config.WeightBits == 8 ? rows * cols + rows * sizeof(float)
                    : rows * ((cols + 1) / 2) + rows * ((cols + g - 1) / g) * (sizeof(float) + (config.SymmetricWeights ? 0 : 1));
            }
        return bytes;
    }

    /// <summary>The runtime options (4-bit kernel, attention quantization, mixed tokens) that <paramref name="config"/> implies.</summary>
    public static RuntimeOptions RuntimeOptionsFor(TransformerModel fp32, QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(fp32);
        return RuntimeOptionsFor(fp32.Kernel, config);
    }

    /// <summary>
    /// The runtime options that <paramref name="config"/> implies for a model run by <paramref name="kernel"/> (its 4-bit
    /// kernel takes the same instruction set and thread count), e.g. for a quantized checkpoint loaded from disk.
    /// </summary>
    public static RuntimeOptions RuntimeOptionsFor(IMatMulKernel kernel, QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(config);
        if (!config.QuantizesActivations) return RuntimeOptions.Default;
        bool needsFourBit = config.ActivationBits == 4 || config.LowBitTokenRatio > 0;
        IMatMulKernel? fourBit = null;
        if (needsFourBit)
        {
            KernelOptions kernelOptions = kernel is KernelSet set ? set.Options with { ActivationBits = 4 } : new KernelOptions { ActivationBits = 4 };
            fourBit = KernelSelector.Create(kernelOptions);
        }
        return new RuntimeOptions
        {
            FourBitActivationKernel = fourBit,
            LowBitTokenRatio = config.LowBitTokenRatio,
            Attention = new AttentionQuantization
            {
                QkvBits = config.EightBitQkv ? 8 : 0,
                KvCacheBits = config.EightBitKvCache ? 8 : 0,
                Log2Softmax = config.Log2Softmax,
            },
        };
    }

    /// <summary>Refuses GPTQ without calibration data (<paramref name="calibrationKind"/> names it) and weight widths no kernel format holds.</summary>
    internal static void RequireCalibrationAndKernelFormat(QuantizationConfig config, ModelQuantizationOptions options, string calibrationKind)
    {
        if (config.Rounding == WeightRounding.Gptq && options.Calibration.Count == 0)
            throw new AgileQuantException($"{config.Name} uses GPTQ, which needs {calibrationKind}.");
        if (config.QuantizesWeights && config.WeightBits is not (4 or 8))
            throw new AgileQuantException($"{config.Name}: {config.WeightBits}-bit weights have no kernel format (4 or 8 are supported).");
    }

    internal static LayerWeights QuantizeLayer(LayerWeights l, QuantizationConfig config, int groupSize, Dictionary<LinearSlot, HessianAccumulator>? hessians,
        StaticActivationScales[]? staticScales)
    {
        bool mixed = config.LowBitTokenRatio > 0;
        return l.MapLinears((role, linear) =>
        {
            LinearSlot slot = role.InputSlot();
            // Lower-bit tokens start at o_proj: Q, K and V keep the full activation bits.
            bool mixedPoint = slot != LinearSlot.QueryKeyValue;
            return QuantizeLinear(linear, config, groupSize, hessians?[slot], mixed && mixedPoint, staticScales?[(int)slot]);
        });
    }

    private static LinearLayer QuantizeLinear(LinearLayer linear, QuantizationConfig config, int groupSize, HessianAccumulator? hessian, bool lowBitTokens,
        StaticActivationScales? staticScales)
    {
        int activationBits = config.QuantizesActivations ? config.ActivationBits : 8;
        if (!config.QuantizesWeights)
            return new LinearLayer(linear.Weight, linear.Bias) { ActivationBits = activationBits, LowBitActivationBits = lowBitTokens ? 4 : 0, HadamardInput = linear.HadamardInput };
        if (linear.Weight is not Fp32Matrix fp32)
            throw new AgileQuantException($"Only FP32 weights can be quantized, found {linear.Weight.GetType().Name}.");
        QuantizerSettings settings = config.WeightSettings();
        if (groupSize > 0 && config.WeightBits == 4) settings = settings with { GroupSize = groupSize };
        if (settings.ActOrder && settings.GroupSize > 0) settings = settings with { StaticGroups = true };
        int rows = fp32.Rows, cols = fp32.Cols;
        QuantizedMatrix q = hessian is null
            ? RoundToNearestQuantizer.Quantize(fp32.Data, rows, cols, settings)
            : GptqQuantizer.Quantize(fp32.Data, rows, cols, hessian, settings);
        IWeightMatrix packed;
        if (!config.QuantizesActivations) packed = new Fp32Matrix(q.Dequantize(), rows, cols);
        else if (config.WeightBits == 8)
        {
            if (!q.Symmetric || q.GroupCount != 1) throw new AgileQuantException("8-bit weights must be symmetric with one scale per row for the int8 kernels.");
            packed = new Int8RowMatrix(q.SignedCodes, q.Scales, rows, cols);
        }
        else
        {
            packed = q.Symmetric
                ? PackedInt4Matrix.FromSymmetricCodes(q.SignedCodes, q.Scales, rows, cols, q.GroupSize)
                : PackedInt4Matrix.FromAsymmetricCodes(q.Codes, q.Scales, q.ZeroPoints, rows, cols, q.GroupSize);
        }
        return new LinearLayer(packed, linear.Bias)
        {
            ActivationBits = activationBits, LowBitActivationBits = lowBitTokens ? 4 : 0, StaticScales = staticScales, HadamardInput = linear.HadamardInput,
        };
    }

    /// <summary><paramref name="source"/> with its decoder layers replaced by <paramref name="layers"/>.</summary>
    internal static TransformerWeights With(TransformerWeights source, IReadOnlyList<LayerWeights> layers) => new()
    {
        Config = source.Config,
        TokenEmbedding = source.TokenEmbedding,
        StoredTokenEmbedding = source.StoredTokenEmbedding,
        PositionEmbedding = source.PositionEmbedding,
        EmbeddingNorm = source.EmbeddingNorm,
        ProjectIn = source.ProjectIn,
        Layers = layers.ToArray(),
        FinalNorm = source.FinalNorm,
        ProjectOut = source.ProjectOut,
        LmHead = source.LmHead,
    };

    private static Dictionary<LinearSlot, HessianAccumulator> CollectHessians(TransformerModel model, int layer, IReadOnlyList<int[]> calibration, CancellationToken cancel)
    {
        LayerWeights l = model.Weights.Layers[layer];
        var observer = new LayerInputHessians(layer, new Dictionary<LinearSlot, HessianAccumulator>
        {
            [LinearSlot.QueryKeyValue] = new(l.Query.InFeatures),
            [LinearSlot.AttentionOutput] = new(l.Output.InFeatures),
            [LinearSlot.MlpInput] = new(l.Up.InFeatures),
            [LinearSlot.MlpDown] = new(l.Down.InFeatures),
        });
        RunCalibration(model, observer, calibration, cancel);
        return observer.Hessians;
    }

    /// <summary>Runs each calibration sequence (cut at the context length) through <paramref name="model"/> with <paramref name="observer"/> watching.</summary>
    internal static void RunCalibration(TransformerModel model, ILinearInputObserver observer, IReadOnlyList<int[]> calibration, CancellationToken cancel)
    {
        InferenceContext context = model.CreateContext();
        context.Observer = observer;
        int limit = model.ContextLength;
        foreach (int[] sequence in calibration)
        {
            cancel.ThrowIfCancellationRequested();
            context.Reset();
            context.Forward(sequence.AsSpan(0, Math.Min(sequence.Length, limit)));
        }
    }

    private sealed class LayerInputHessians(int layer, Dictionary<LinearSlot, HessianAccumulator> hessians) : ILinearInputObserver
    {
        public Dictionary<LinearSlot, HessianAccumulator> Hessians => hessians;

        public void Observe(int observedLayer, LinearSlot slot, ReadOnlySpan<float> input, int tokens)
        {
            if (observedLayer == layer) hessians[slot].Add(input, tokens);
        }
    }
}
