using AgileQuant.Core.Runtime;

namespace AgileQuant.Models;

/// <summary>
/// The memory a configuration implies before any tensor is read, so an absurd config (hidden_size 2^30, a header
/// that lies) is refused with a clear message instead of an allocation failure part-way through loading.
/// </summary>
public static class WeightMemoryBudget
{
    /// <summary>
    /// A lower bound on the bytes of the FP32 weights <paramref name="config"/> implies, in exact 128-bit arithmetic:
    /// <c>4 · (V·E + L·(2·q·d + 2·kv·d + m·f·d))</c> with q = heads · head size, m = 3 for a gated MLP (SwiGLU, GeGLU), else 2
    /// (embedding, attention and MLP matrices; norms, biases, position tables and an untied head come on top).
    /// </summary>
    public static Int128 ImpliedFp32Bytes(TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Int128 headSize = config.NumHeads == 0 ? 0 : config.HeadSize > 0 ? config.HeadSize : config.HiddenSize / config.NumHeads;
        Int128 d = config.HiddenSize, f = config.IntermediateSize, q = config.NumHeads * headSize, kv = config.NumKvHeads * headSize;
        int mlpMatrices = config.Mlp.IsGated() ? 3 : 2;
        Int128 perLayer = 2 * q * d + 2 * kv * d + mlpMatrices * f * d;
        return 4 * ((Int128)config.VocabSize * config.EmbeddingWidth + config.NumLayers * perLayer);
    }

    /// <summary>The default budget: the memory the runtime may use (<see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>).</summary>
    public static long DefaultBudget => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Throws <see cref="ModelFormatException"/> naming <paramref name="filePath"/> when the weights <paramref name="config"/> implies exceed <paramref name="maxBytes"/>.</summary>
    public static void Enforce(string filePath, TransformerConfig config, long maxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        Int128 implied = ImpliedFp32Bytes(config);
        if (implied > maxBytes)
            throw new ModelFormatException(filePath, null,
                $"the configuration (vocab {config.VocabSize}, hidden {config.HiddenSize}, intermediate {config.IntermediateSize}, layers {config.NumLayers}) " +
                $"implies at least {implied} bytes of FP32 weights, more than the loading budget of {maxBytes} bytes (ModelLoadOptions.MaxWeightBytes)");
    }
}
