using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;

namespace AgileQuant.Core.Encoder;

/// <summary>
/// Quantizes an FP32 <see cref="EncoderModel"/> to a named <see cref="QuantizationConfig"/> with the decoder's layer
/// quantizer (<see cref="ModelQuantizer"/>): every linear's weight by RTN or GPTQ into the kernels' packed formats,
/// per-token activations, and the attention rounding the configuration implies. Embeddings and LayerNorms stay FP32.
/// </summary>
/// <remarks>
/// GPTQ calibrates sequentially, as for decoders: layer l's Hessians come from running the calibration sequences
/// (token ids starting with [CLS]) through the encoder whose layers 0..l−1 are already quantized, with bidirectional attention.
/// </remarks>
public static class EncoderQuantizer
{
    /// <summary>Quantizes <paramref name="fp32"/> to <paramref name="config"/>; the result keeps <paramref name="fp32"/>'s scoring and pruning schedule.</summary>
    /// <exception cref="AgileQuantException">GPTQ without calibration sequences, an unsupported bit width or the mixed scheme.</exception>
    public static EncoderModel Quantize(EncoderModel fp32, QuantizationConfig config, ModelQuantizationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(fp32);
        ArgumentNullException.ThrowIfNull(config);
        options ??= new ModelQuantizationOptions();
        if (!config.QuantizesWeights && !config.QuantizesActivations) return fp32;
        if (config.LowBitTokenRatio > 0) throw new AgileQuantException($"{config.Name}: the encoder does not support lower-bit (mixed-precision) tokens.");
        if (config.Rotate) throw new AgileQuantException($"{config.Name}: the encoder is not rotated (its LayerNorms do not commute with a rotation).");
        if (config.StaticActivationScales) throw new AgileQuantException($"{config.Name}: the encoder does not support TRIP's static activation scales (per-token scales only).");
        ModelQuantizer.RequireCalibrationAndKernelFormat(config, options, "calibration sequences");
        RuntimeOptions runtime = ModelQuantizer.RuntimeOptionsFor(fp32.Kernel, config) with { Pruning = fp32.Options.Pruning };
        EncoderWeights source = fp32.Weights;
        LayerWeights[] layers = source.Layers.ToArray();
        // calibration runs without pruning: every token contributes to the Hessians
        RuntimeOptions calibrationRuntime = runtime with { Pruning = null };
        for (int l = 0; l < layers.Length; l++)
        {
            options.CancellationToken.ThrowIfCancellationRequested();
            Dictionary<LinearSlot, HessianAccumulator>? hessians = null;
            if (config.Rounding == WeightRounding.Gptq)
            {
                var partial = new EncoderModel(With(source, layers), fp32.Kernel, calibrationRuntime);
                hessians = CollectHessians(partial, l, options.Calibration, options.CancellationToken);
            }
            layers[l] = ModelQuantizer.QuantizeLayer(source.Layers[l], config, options.GroupSize, hessians, staticScales: null);
            options.Progress?.Report($"quantized encoder layer {l + 1}/{layers.Length} ({config.Name})");
        }
        return new EncoderModel(With(source, layers), fp32.Kernel, runtime, fp32.Scoring, fp32.ScoringSeed);
    }

    private static EncoderWeights With(EncoderWeights source, LayerWeights[] layers) => new()
    {
        Config = source.Config,
        TokenEmbedding = source.TokenEmbedding,
        PositionEmbedding = source.PositionEmbedding,
        TokenTypeEmbedding = source.TokenTypeEmbedding,
        EmbeddingNorm = source.EmbeddingNorm,
        Layers = layers.ToArray(),
        InputScales = source.InputScales,
    };

    private static Dictionary<LinearSlot, HessianAccumulator> CollectHessians(EncoderModel model, int layer, IReadOnlyList<int[]> calibration, CancellationToken cancel)
    {
        LayerWeights l = model.Weights.Layers[layer];
        var hessians = new Dictionary<LinearSlot, HessianAccumulator>
        {
            [LinearSlot.QueryKeyValue] = new(l.Query.InFeatures),
            [LinearSlot.AttentionOutput] = new(l.Output.InFeatures),
            [LinearSlot.MlpInput] = new(l.Up.InFeatures),
            [LinearSlot.MlpDown] = new(l.Down.InFeatures),
        };
        EncoderContext context = model.CreateContext();
        context.Observer = new LayerInputHessians(layer, hessians);
        int limit = model.Config.MaxPositions;
        foreach (int[] sequence in calibration)
        {
            cancel.ThrowIfCancellationRequested();
            if (sequence.Length == 0) continue;
            context.Encode(sequence.AsSpan(0, Math.Min(sequence.Length, limit)));
        }
        return hessians;
    }

    private sealed class LayerInputHessians(int layer, Dictionary<LinearSlot, HessianAccumulator> hessians) : ILinearInputObserver
    {
        public void Observe(int observedLayer, LinearSlot slot, ReadOnlySpan<float> input, int tokens)
        {
            if (observedLayer == layer) hessians[slot].Add(input, tokens);
        }
    }
}
