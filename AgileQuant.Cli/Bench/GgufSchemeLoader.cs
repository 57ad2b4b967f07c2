using AgileQuant.Core.Pruning;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models;

namespace AgileQuant.Cli.Bench;

/// <summary>
/// Runs the weights of a GGUF file under one of our named schemes: the file decides the weight format (F32/F16 → FP32,
/// Q8_0/Q5_0/Q5_1/Q5_K/Q6_K → grouped W8, Q4_0 → symmetric W4 groups of 32, the other types FP32 for now), the scheme
/// the rest — activation bits (4 for W4A4), attention and KV-cache quantization — and an optional token-pruning
/// schedule. This is how the same file runs in both engines of the end-to-end comparison.
/// </summary>
internal static class GgufSchemeLoader
{
    /// <summary>Loads <paramref name="path"/> and applies <paramref name="scheme"/> (a <see cref="QuantizationConfig"/> name) and <paramref name="pruning"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a valid LLaMA GGUF model.</exception>
    /// <exception cref="Core.AgileQuantException">Unknown scheme.</exception>
    public static TransformerModel Load(string path, string scheme, IMatMulKernel kernel, TokenPruningSchedule? pruning = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(scheme);
        ArgumentNullException.ThrowIfNull(kernel);
        QuantizationConfig config = QuantizationConfig.Parse(scheme);
        // loaded with kernels of the same instruction set, so the weights are repacked for `kernel` before the load's collection
        KernelOptions loadKernels = kernel is KernelSet set ? set.Options : new KernelOptions();
        TransformerModel model = ModelLoader.Load(path, new ModelLoadOptions { KernelOptions = loadKernels, CheckFiniteWeights = false }).Model;
        RuntimeOptions options = ModelQuantizer.RuntimeOptionsFor(kernel, config) with { Pruning = pruning };
        TransformerWeights weights = config.QuantizesActivations && config.ActivationBits != 8 ? WithActivationBits(model.Weights, config.ActivationBits) : model.Weights;
        return new TransformerModel(weights, kernel, options);
    }

    /// <summary>The same weights with every decoder linear's activations quantized to <paramref name="bits"/>.</summary>
    private static TransformerWeights WithActivationBits(TransformerWeights w, int bits)
    {
        LayerWeights[] layers = w.Layers.Select(l => l.MapLinears((_, linear) => new LinearLayer(linear.Weight, linear.Bias) { ActivationBits = bits })).ToArray();
        return new TransformerWeights { Config = w.Config, TokenEmbedding = w.TokenEmbedding, StoredTokenEmbedding = w.StoredTokenEmbedding, Layers = layers, FinalNorm = w.FinalNorm, LmHead = w.LmHead };
    }
}
