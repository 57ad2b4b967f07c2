using AgileQuant.Core;
using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Architectures;

namespace AgileQuant.Models.Gguf;

/// <summary>
/// Reads a GGUF v3 model of any family in <see cref="ArchitectureRegistry"/> (by <c>general.architecture</c>): the
/// hyper-parameter keys every family shares (<c>{arch}.block_count</c>, <c>{arch}.embedding_length</c>, ... as
/// llama.cpp names them) plus the family's own into a <see cref="TransformerConfig"/>, and the tensors under the
/// family's GGUF names (<c>token_embd</c>, <c>blk.N.*</c>, <c>output_norm</c>, <c>output</c>) into <see cref="TransformerWeights"/>.
/// </summary>
/// <remarks>
/// Q/K rows are taken as stored: the config's <see cref="RotaryPairing"/> is the family's GGUF layout
/// (<see cref="ArchitectureDescription.GgufRotaryPairing"/>; LLaMA's is <see cref="RotaryPairing.Adjacent"/>).
/// Tensor types: those <see cref="GgmlTypeTraits"/> reads, in the format its table gives (see <see cref="GgufTensorConverter"/>).
/// </remarks>
public static class GgufModelReader
{
    /// <summary>Reads the runtime configuration from <paramref name="gguf"/>'s metadata.</summary>
    /// <exception cref="ModelFormatException">The architecture is not supported, or a key is missing, out of range, or names an unsupported feature.</exception>
    public static TransformerConfig ReadConfig(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        return ReadConfig(gguf, ArchitectureRegistry.ForGguf(gguf));
    }

    /// <summary>Reads the configuration of a <paramref name="family"/> model from <paramref name="gguf"/>'s metadata.</summary>
    internal static TransformerConfig ReadConfig(GgufFile gguf, ArchitectureDescription family)
    {
        string a = family.GgufKeyPrefix ?? throw new ArgumentException($"The '{family.Family}' family has no GGUF form.", nameof(family));
        if (gguf.TryGetValue(a + "rope.scaling.type", out _) && gguf.GetString(a + "rope.scaling.type") is not "none" and string scaling)
            throw new ModelFormatException(gguf.FilePath, null, $"expected no RoPE scaling, found {a}rope.scaling.type '{scaling}' (not supported)");
        if (gguf.TryGetValue(a + "expert_count", out _) && gguf.GetInteger(a + "expert_count") > 0)
            throw new ModelFormatException(gguf.FilePath, null, $"expected a dense model, found {a}expert_count {gguf.GetInteger(a + "expert_count")} (mixture of experts is not supported)");
        int heads = PositiveInt(gguf, a + "attention.head_count");
        int hidden = PositiveInt(gguf, a + "embedding_length");
        string embeddingName = family.GgufNames!.Global(ModelTensor.TokenEmbedding) + ".weight";
        GgufTensorInfo? embedding = gguf.FindTensor(embeddingName);
        int vocab = gguf.TryGetValue(a + "vocab_size", out _) ? PositiveInt(gguf, a + "vocab_size")
            : embedding is { Shape.Count: 2 } && embedding.Shape[1] <= int.MaxValue ? (int)embedding.Shape[1]
            : gguf.TryGetValue("tokenizer.ggml.tokens", out _) ? gguf.GetArray<string>("tokenizer.ggml.tokens").Count
            : throw new ModelFormatException(gguf.FilePath, embeddingName, $"expected a 2-D token embedding or {a}vocab_size to give the vocabulary size, found neither");
        var config = new TransformerConfig
        {
            Family = family.Family,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = PositiveInt(gguf, a + "feed_forward_length"),
            NumLayers = PositiveInt(gguf, a + "block_count"),
            NumHeads = heads,
            NumKvHeads = gguf.TryGetValue(a + "attention.head_count_kv", out _) ? PositiveInt(gguf, a + "attention.head_count_kv") : heads,
            MaxSequenceLength = PositiveInt(gguf, a + "context_length"),
            Norm = family.Norm,
            NormEpsilon = (float)PositiveFloat(gguf, a + NormEpsilonKey(family.Norm), 1e-5),
            Positions = family.Positions,
            RotaryPairing = family.GgufRotaryPairing,
            RotaryTheta = (float)PositiveFloat(gguf, a + "rope.freq_base", 10000),
            Mlp = family.Mlp,
            EmbeddingNorm = family.EmbeddingNorm,
            BosTokenId = TokenId(gguf, "tokenizer.ggml.bos_token_id", 1),
            EosTokenId = TokenId(gguf, "tokenizer.ggml.eos_token_id", 2),
        };
        config = family.ReadGgufConfig(gguf, config);
        try { config.Validate(); }
        catch (AgileQuantException e) { throw new ModelFormatException(gguf.FilePath, null, e.Message, e); }
        if (config.Positions == PositionKind.Rotary && gguf.TryGetValue(a + "rope.dimension_count", out _) && gguf.GetInteger(a + "rope.dimension_count") != config.HeadDim)
            throw new ModelFormatException(gguf.FilePath, null,
                $"expected {a}rope.dimension_count equal to the head size {config.HeadDim}, found {gguf.GetInteger(a + "rope.dimension_count")} (partial rotary is not supported)");
        return config;
    }

    /// <summary>Maps <paramref name="gguf"/>'s file and reads every tensor <paramref name="config"/> implies under the family's GGUF names; no other tensor may be present.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing, unexpected, misshapen, of an unsupported type, or holds a non-finite scale.</exception>
    public static TransformerWeights ReadWeights(GgufFile gguf, TransformerConfig config)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentNullException.ThrowIfNull(config);
        return ReadWeights(gguf, config, ArchitectureRegistry.ForGguf(gguf));
    }

    /// <summary>Reads the weights of a <paramref name="family"/> model of <paramref name="config"/> from <paramref name="gguf"/>.</summary>
    internal static TransformerWeights ReadWeights(GgufFile gguf, TransformerConfig config, ArchitectureDescription family)
    {
        using GgufTensorData data = GgufTensorData.Open(gguf);
        return DecoderWeightsReader.Read(family, config, family.GgufNames!, "", new TensorSource(gguf, new GgufTensorConverter(data)));
    }

    /// <summary>The GGUF key (after the family prefix) of the epsilon of <paramref name="norm"/>: llama.cpp's <c>LLM_KV_ATTENTION_LAYERNORM_(RMS_)EPS</c>.</summary>
    internal static string NormEpsilonKey(NormKind norm) => norm == NormKind.RmsNorm ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon";

    /// <summary>
    /// Bytes the weights of <paramref name="gguf"/> take once loaded, from each type's <see cref="GgmlTypeTraits.LoadFormat"/>:
    /// packed formats (Q4_0, and the Q5/Q6/Q8 types as grouped int8) with their FP32 scales (bounded by twice the stored bytes), FP32 ones
    /// (F16/BF16 and the types dequantized at load) four bytes per weight, token embeddings dequantized.
    /// Checked against a budget before any tensor is read.
    /// </summary>
    public static Int128 LoadedBytes(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        Int128 total = 0;
        foreach (GgufTensorInfo tensor in gguf.Tensors)
            total += tensor.Name == "token_embd.weight" || GgmlTypeTraits.Find(tensor.Type)?.LoadFormat is not (GgmlLoadFormat.PackedInt4 or GgmlLoadFormat.GroupedInt8)
                ? (Int128)tensor.ElementCount * sizeof(float)
                : tensor.ByteSize * (Int128)2;
        return total;
    }

    /// <summary>Throws <see cref="ModelFormatException"/> when <see cref="LoadedBytes"/> exceeds <paramref name="maxBytes"/>.</summary>
    public static void EnforceBudget(GgufFile gguf, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        Int128 bytes = LoadedBytes(gguf);
        if (bytes > maxBytes)
            throw new ModelFormatException(gguf.FilePath, null,
                $"the tensors imply about {bytes} bytes of loaded weights, more than the loading budget of {maxBytes} bytes (ModelLoadOptions.MaxWeightBytes)");
    }

    /// <summary>GGUF tensors for <see cref="DecoderWeightsReader"/>, converted by <see cref="GgufTensorConverter"/>.</summary>
    private sealed class TensorSource(GgufFile gguf, GgufTensorConverter converter) : ITensorSource
    {
        public bool Has(string name) => converter.Has(name);

        public IWeightMatrix Matrix(string name, int rows, int cols) => converter.TakeMatrix(name, rows, cols);

        public float[] Table(string name, int rows, int cols) => converter.TakeTable(name, rows, cols);

        public float[] Vector(string name, int length) => converter.TakeVector(name, length);

        // Tied models omit output.weight: the head multiplies by the embedding in its stored format.
        public IWeightMatrix TiedHead(string embeddingName, float[] embedding, int rows, int cols) =>
            GgmlTypeTraits.Find(gguf.FindTensor(embeddingName)!.Type)?.LoadFormat is GgmlLoadFormat.PackedInt4 or GgmlLoadFormat.GroupedInt8
                ? converter.TakeMatrix(embeddingName, rows, cols)
                : new Fp32Matrix(embedding, rows, cols);

        public void RequireAllTaken() => converter.RequireAllTaken();
    }

    internal static int PositiveInt(GgufFile gguf, string key)
    {
        long value = gguf.GetInteger(key);
        return value is > 0 and <= int.MaxValue ? (int)value
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected an integer in 1..{int.MaxValue}, found {value}");
    }

    internal static double PositiveFloat(GgufFile gguf, string key, double fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        double value = gguf.GetFloat(key);
        return value > 0 && double.IsFinite(value) && value < float.MaxValue ? value
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a positive finite number, found {value}");
    }

    private static int TokenId(GgufFile gguf, string key, int fallback)
    {
        if (!gguf.TryGetValue(key, out _)) return fallback;
        long id = gguf.GetInteger(key);
        return id is >= 0 and <= int.MaxValue ? (int)id
            : throw new ModelFormatException(gguf.FilePath, null, $"metadata '{key}': expected a token id, found {id}");
    }
}
